//! The Arrow types behind the column types manifest validation declares for what steps make
//! (`weir_crds::steps::ColumnType`), so tests hold the declarations to the columns steps build.

use arrow_schema::{DataType, Field, Fields};
use weir_crds::steps::ColumnType;

/// The Arrow type `ty` stands for (struct fields and list items nullable).
pub fn arrow_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Utf8 => DataType::Utf8,
        ColumnType::Binary => DataType::Binary,
        ColumnType::Boolean => DataType::Boolean,
        ColumnType::UInt8 => DataType::UInt8,
        ColumnType::UInt32 => DataType::UInt32,
        ColumnType::UInt64 => DataType::UInt64,
        ColumnType::Float32 => DataType::Float32,
        ColumnType::Float64 => DataType::Float64,
        ColumnType::List(item) => DataType::List(std::sync::Arc::new(Field::new("item", arrow_type(*item), true))),
        ColumnType::Struct(fields) => DataType::Struct(
            fields.iter().map(|f| Field::new(f.name, arrow_type(f.ty), true)).collect::<Vec<_>>().into(),
        ),
    }
}

/// Whether `fields` are the struct `ty` declares: the same names, in order, of the same types
/// (nullability and list item names aside).
pub fn declares(ty: ColumnType, fields: &Fields) -> bool {
    let DataType::Struct(declared) = arrow_type(ty) else { return false };
    declared.len() == fields.len()
        && declared
            .iter()
            .zip(fields.iter())
            .all(|(d, f)| d.name() == f.name() && same_type(d.data_type(), f.data_type()))
}

fn same_type(declared: &DataType, made: &DataType) -> bool {
    match (declared, made) {
        (DataType::List(d), DataType::List(m)) => same_type(d.data_type(), m.data_type()),
        (DataType::Struct(d), DataType::Struct(m)) => {
            d.len() == m.len()
                && d.iter().zip(m.iter()).all(|(d, m)| d.name() == m.name() && same_type(d.data_type(), m.data_type()))
        }
        (d, m) => d == m,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_image_type_is_the_image_column_steps_make() {
        assert!(declares(weir_crds::steps::IMAGE_TYPE, &crate::image::image_fields()));
        assert!(!declares(weir_crds::steps::AUDIO_TYPE, &crate::image::image_fields()));
    }
}
