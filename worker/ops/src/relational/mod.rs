//! Steps that reshape rows and columns: filter, select, rename, explode.

pub mod explode;
pub mod filter;
pub mod select;
