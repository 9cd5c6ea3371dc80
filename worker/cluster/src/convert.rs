//! Conversions between the executor's work units and their wire form.

use weir_core::WorkUnit;
use weir_core::unit::{FileEntry, UnitInput};

use crate::proto;

/// The wire form of `unit`.
pub fn unit_to_proto(unit: &WorkUnit) -> proto::Unit {
    let input = match &unit.input {
        UnitInput::Files(files) => proto::unit::Input::Files(proto::Files {
            entries: files.iter().map(|f| proto::FileEntry { uri: f.uri.clone(), size: f.size }).collect(),
        }),
        UnitInput::ParquetRowGroups { uri, row_groups, rows } => proto::unit::Input::Parquet(proto::ParquetRowGroups {
            uri: uri.clone(),
            row_groups: row_groups.iter().map(|&g| g as u32).collect(),
            rows: *rows,
        }),
    };
    proto::Unit { id: unit.id, attempt: unit.attempt, input: Some(input) }
}

/// The work unit a wire unit describes.
///
/// # Errors
/// When the unit has no input (a peer speaking another version of the protocol).
pub fn unit_from_proto(unit: proto::Unit) -> Result<WorkUnit, String> {
    let input = match unit.input {
        Some(proto::unit::Input::Files(files)) => {
            UnitInput::Files(files.entries.into_iter().map(|f| FileEntry { uri: f.uri, size: f.size }).collect())
        }
        Some(proto::unit::Input::Parquet(p)) => UnitInput::ParquetRowGroups {
            uri: p.uri,
            row_groups: p.row_groups.into_iter().map(|g| g as usize).collect(),
            rows: p.rows,
        },
        None => return Err(format!("unit {} has no input", unit.id)),
    };
    Ok(WorkUnit { id: unit.id, attempt: unit.attempt, input })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_survive_the_round_trip() {
        let units = [
            WorkUnit {
                id: 3,
                attempt: 1002,
                input: UnitInput::Files(vec![FileEntry { uri: "s3://b/a.jpg".into(), size: 10 }]),
            },
            WorkUnit {
                id: 4,
                attempt: 0,
                input: UnitInput::ParquetRowGroups { uri: "file:///x.parquet".into(), row_groups: vec![2, 3], rows: 9 },
            },
        ];
        for unit in units {
            assert_eq!(unit_from_proto(unit_to_proto(&unit)), Ok(unit));
        }
    }
}
