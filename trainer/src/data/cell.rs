//! Parquet values as a small owned tree, so row parsing reads one shape
//! whichever list layout or string encoding the writer (pyarrow, arrow-rs,
//! Spark) chose.

use parquet::record::Field;

#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Cell>),
    Struct(Vec<(String, Cell)>),
    /// Numbers, booleans, dates: rendered as text.
    Scalar(String),
}

impl Cell {
    pub fn field(&self, name: &str) -> Option<&Cell> {
        match self {
            Cell::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, c)| c),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Cell::Str(s) | Cell::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cell::Null)
    }
}

/// One record value as a cell; maps are the one shape the seed never uses.
pub fn cell(field: &Field) -> Result<Cell, String> {
    Ok(match field {
        Field::Null => Cell::Null,
        Field::Str(s) => Cell::Str(s.clone()),
        Field::Bytes(b) => Cell::Bytes(b.data().to_vec()),
        Field::ListInternal(list) => {
            Cell::List(list.elements().iter().map(cell).collect::<Result<_, _>>()?)
        }
        Field::Group(row) => Cell::Struct(
            row.get_column_iter()
                .map(|(name, f)| Ok((name.clone(), cell(f)?)))
                .collect::<Result<_, String>>()?,
        ),
        Field::MapInternal(_) => return Err("unsupported column type map".into()),
        scalar => Cell::Scalar(scalar.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::ByteArray;
    use parquet::record::Row;

    #[test]
    fn records_become_cells() {
        let f = Field::Group(Row::new(vec![
            ("role".into(), Field::Str("user".into())),
            ("n".into(), Field::Int(3)),
            ("path".into(), Field::Null),
            ("bytes".into(), Field::Bytes(ByteArray::from(vec![1u8, 2]))),
        ]));
        let c = cell(&f).unwrap();
        assert_eq!(c.field("role").and_then(Cell::as_str), Some("user"));
        assert_eq!(c.field("n").and_then(Cell::as_str), Some("3"));
        assert!(c.field("path").unwrap().is_null());
        assert_eq!(c.field("bytes"), Some(&Cell::Bytes(vec![1, 2])));
        assert_eq!(c.field("missing"), None);
    }
}
