//! `--workers`: how many local worker processes each pool gets, fixed (`cpu=2`) or as bounds the
//! local autoscaler moves between (`gpu=1..3`, optionally starting elsewhere: `gpu=1..3@3`).

use weir_crds::PoolName;

/// Worker processes of one pool: `start` at the start (within the bounds); the autoscaler keeps
/// it within `min..=max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolWorkers {
    pub pool: PoolName,
    pub min: usize,
    pub max: usize,
    pub start: usize,
}

impl PoolWorkers {
    /// Whether the autoscaler may move this pool.
    pub fn scales(&self) -> bool {
        self.min < self.max
    }
}

/// Worker processes per pool, e.g. `cpu=2,gpu-l4=1..3` (a bare number means `cpu=N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology(pub Vec<PoolWorkers>);

impl Topology {
    /// Parses `cpu=2,gpu-l4=1..3@2` or `3`: pool names as in `spec.pools`, each at most once; a
    /// range `MIN..MAX` lets the local autoscaler move the pool between its bounds, starting at
    /// `MIN` or at the `@START` given (like KubeRay's `replicas` beside `minReplicas`).
    ///
    /// # Errors
    /// A message naming the malformed part.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(n) = text.trim().parse::<usize>() {
            return Self::checked(vec![PoolWorkers { pool: PoolName::cpu(), min: n, max: n, start: n }]);
        }
        let mut pools: Vec<PoolWorkers> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (pool, count) = part.split_once('=').ok_or_else(|| {
                format!("`{part}`: expected POOL=COUNT or POOL=MIN..MAX[@START], e.g. cpu=2 or gpu=1..3")
            })?;
            let number =
                |n: &str| n.trim().parse::<usize>().map_err(|_| format!("`{part}`: counts must be whole numbers"));
            let (range, start) = match count.split_once('@') {
                Some((range, start)) => (range, Some(number(start)?)),
                None => (count, None),
            };
            let (min, max) = match range.split_once("..") {
                Some((min, max)) => (number(min)?, number(max)?),
                None => (number(range)?, number(range)?),
            };
            if min > max {
                return Err(format!("`{part}`: the lower bound {min} is above the upper bound {max}"));
            }
            let start = start.unwrap_or(min);
            if !(min..=max).contains(&start) {
                return Err(format!("`{part}`: the start {start} is outside the bounds {min}..{max}"));
            }
            let pool = PoolName::new(pool.trim()).map_err(|e| format!("`{part}`: {e}"))?;
            if pools.iter().any(|p| p.pool == pool) {
                return Err(format!("`{part}`: pool {pool} is named twice"));
            }
            pools.push(PoolWorkers { pool, min, max, start });
        }
        Self::checked(pools)
    }

    fn checked(pools: Vec<PoolWorkers>) -> Result<Self, String> {
        if pools.iter().map(|p| p.max).sum::<usize>() == 0 {
            return Err("at least one worker is needed".into());
        }
        Ok(Self(pools))
    }

    /// Worker processes at the start.
    pub fn workers(&self) -> usize {
        self.0.iter().map(|p| p.start).sum()
    }

    /// Worker processes at most: every pool at its upper bound (what threads and memory are
    /// divided by, so the machine is never oversubscribed).
    pub fn most_workers(&self) -> usize {
        self.0.iter().map(|p| p.max).sum()
    }

    /// Whether any pool has a range for the autoscaler.
    pub fn scales(&self) -> bool {
        self.0.iter().any(PoolWorkers::scales)
    }

    /// The upper bound of `pool`, if listed.
    pub fn max_of(&self, pool: &PoolName) -> Option<usize> {
        self.0.iter().find(|p| p.pool == *pool).map(|p| p.max)
    }

    /// Whether the topology fits a job that runs on `in_use` (leasing pool first): every pool
    /// the job uses starts with a worker, and no worker serves a pool the job does not use.
    ///
    /// # Errors
    /// A message naming the missing or unused pool and the job's pools.
    pub fn check_against(&self, in_use: &[PoolName]) -> Result<(), String> {
        let names: Vec<&str> = in_use.iter().map(PoolName::as_str).collect();
        let listed = |pool: &PoolName| self.0.iter().any(|p| p.pool == *pool && p.start > 0);
        if let Some(missing) = in_use.iter().find(|p| !listed(p)) {
            return Err(format!(
                "the job runs steps on pool {missing}, which --workers gives no worker (the job's pools: {})",
                names.join(", ")
            ));
        }
        if let Some(unused) = self.0.iter().find(|p| p.max > 0 && !in_use.contains(&p.pool)) {
            let unused = &unused.pool;
            return Err(format!("no step of the job runs on pool {unused} (the job's pools: {})", names.join(", ")));
        }
        Ok(())
    }
}

impl std::str::FromStr for Topology {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str) -> PoolName {
        PoolName::new(name).expect("pool name")
    }

    fn fixed(name: &str, n: usize) -> PoolWorkers {
        PoolWorkers { pool: pool(name), min: n, max: n, start: n }
    }

    #[test]
    fn topologies_parse_and_typos_are_named() {
        assert_eq!(Topology::parse("cpu=2,gpu=1"), Ok(Topology(vec![fixed("cpu", 2), fixed("gpu", 1)])));
        assert_eq!(Topology::parse("cpu=1,gpu-l4=2"), Ok(Topology(vec![fixed("cpu", 1), fixed("gpu-l4", 2)])));
        assert_eq!(Topology::parse("3"), Ok(Topology(vec![fixed("cpu", 3)])));
        assert!(Topology::parse("cpu2").unwrap_err().contains("`cpu2`"));
        assert!(Topology::parse("GPU=1").unwrap_err().contains("not a pool name"));
        assert!(Topology::parse("cpu=1,cpu=2").unwrap_err().contains("twice"));
        assert!(Topology::parse("cpu=0").is_err());
    }

    #[test]
    fn ranges_give_bounds_for_the_autoscaler_and_start_at_the_lower() {
        let topology = Topology::parse("cpu=1..2,gpu=1..3").expect("topology");
        let gpu = PoolWorkers { pool: pool("gpu"), min: 1, max: 3, start: 1 };
        assert_eq!(topology.0[1], gpu);
        assert!(topology.scales());
        assert_eq!((topology.workers(), topology.most_workers()), (2, 5));
        assert!(!Topology::parse("cpu=2").expect("fixed").scales());
        assert!(Topology::parse("gpu=3..1").unwrap_err().contains("above the upper bound"));
        assert!(Topology::parse("gpu=1..x").unwrap_err().contains("whole numbers"));
    }

    #[test]
    fn a_range_may_start_anywhere_within_its_bounds() {
        let topology = Topology::parse("cpu=1,gpu=1..3@3").expect("topology");
        assert_eq!(topology.0[1], PoolWorkers { pool: pool("gpu"), min: 1, max: 3, start: 3 });
        assert_eq!((topology.workers(), topology.most_workers()), (4, 4));
        assert!(Topology::parse("gpu=1..3@4").unwrap_err().contains("start 4 is outside the bounds 1..3"));
        assert!(Topology::parse("gpu=1..3@0").unwrap_err().contains("outside"));
        assert!(Topology::parse("gpu=1..3@x").unwrap_err().contains("whole numbers"));
        assert_eq!(Topology::parse("gpu=2@2").expect("fixed").0[0].start, 2);
    }

    #[test]
    fn a_topology_must_serve_every_pool_of_the_job_and_no_other() {
        let pools = |names: &[&str]| names.iter().map(|n| PoolName::new(*n).expect("name")).collect::<Vec<_>>();
        let topology = Topology::parse("cpu=2,gpu-l4=1").expect("topology");
        assert_eq!(topology.check_against(&pools(&["cpu", "gpu-l4"])), Ok(()));
        assert!(topology.check_against(&pools(&["cpu", "gpu-l4", "gpu-h100"])).unwrap_err().contains("gpu-h100"));
        assert!(topology.check_against(&pools(&["cpu"])).unwrap_err().contains("gpu-l4"));
        let starts_empty = Topology::parse("cpu=1,gpu-l4=0..2").expect("topology");
        assert!(starts_empty.check_against(&pools(&["cpu", "gpu-l4"])).unwrap_err().contains("gpu-l4"));
    }
}
