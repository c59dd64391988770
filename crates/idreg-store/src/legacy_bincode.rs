//! A reader of data format 1's value encoding, for migrating it: what
//! `bincode::serialize` (bincode 1, its legacy configuration) wrote. That is
//! fixed-width little-endian integers, a u8 tag for `bool` and `Option`, a
//! u32 variant index for enums, a u64 length before strings, bytes,
//! sequences and maps, and struct fields in order with no names.
//!
//! bincode itself is unmaintained (RUSTSEC-2025-0141); this reader keeps
//! old directories and backups readable without depending on it. It only
//! reads, and only into types that know their own shape (the format is not
//! self-describing).

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

use crate::codec::CodecError;

/// Decodes `bytes` as format 1 wrote a `T`; bytes left over are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let mut reader = Reader { input: bytes };
    let value = T::deserialize(&mut reader)?;
    if !reader.input.is_empty() {
        return Err(CodecError::custom(format!(
            "{} bytes left after the value",
            reader.input.len()
        )));
    }
    Ok(value)
}

struct Reader<'de> {
    input: &'de [u8],
}

impl<'de> Reader<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], CodecError> {
        if self.input.len() < n {
            return Err(CodecError::custom(format!(
                "value ends early: {n} bytes wanted, {} left",
                self.input.len()
            )));
        }
        let (head, rest) = self.input.split_at(n);
        self.input = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// A length prefix; one longer than the input left cannot be true, so
    /// it is refused before anything is allocated for it.
    fn len(&mut self) -> Result<usize, CodecError> {
        let n = u64::from_le_bytes(self.array()?);
        if n > self.input.len() as u64 {
            return Err(CodecError::custom(format!(
                "length {n} exceeds the {} bytes left",
                self.input.len()
            )));
        }
        Ok(n as usize)
    }

    fn tag(&mut self) -> Result<bool, CodecError> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            t => Err(CodecError::custom(format!("tag {t} is neither 0 nor 1"))),
        }
    }

    fn str(&mut self) -> Result<&'de str, CodecError> {
        let n = self.len()?;
        std::str::from_utf8(self.take(n)?).map_err(|e| CodecError::custom(e.to_string()))
    }
}

macro_rules! fixed {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
            visitor.$visit(<$ty>::from_le_bytes(self.array()?))
        }
    };
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de> {
    type Error = CodecError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::custom(
            "format 1 is not self-describing: the type must be known",
        ))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_bool(self.tag()?)
    }

    fixed!(deserialize_i8, visit_i8, i8);
    fixed!(deserialize_i16, visit_i16, i16);
    fixed!(deserialize_i32, visit_i32, i32);
    fixed!(deserialize_i64, visit_i64, i64);
    fixed!(deserialize_i128, visit_i128, i128);
    fixed!(deserialize_u8, visit_u8, u8);
    fixed!(deserialize_u16, visit_u16, u16);
    fixed!(deserialize_u32, visit_u32, u32);
    fixed!(deserialize_u64, visit_u64, u64);
    fixed!(deserialize_u128, visit_u128, u128);
    fixed!(deserialize_f32, visit_f32, f32);
    fixed!(deserialize_f64, visit_f64, f64);

    /// A char was written as its UTF-8 bytes, with no length.
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let first = *self
            .input
            .first()
            .ok_or_else(|| CodecError::custom("no char"))?;
        let width = match first.leading_ones() {
            0 => 1,
            n @ 2..=4 => n as usize,
            _ => return Err(CodecError::custom("invalid UTF-8 in a char")),
        };
        let s = std::str::from_utf8(self.take(width)?)
            .map_err(|e| CodecError::custom(e.to_string()))?;
        visitor.visit_char(s.chars().next().expect("one char"))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_borrowed_str(self.str()?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let n = self.len()?;
        visitor.visit_borrowed_bytes(self.take(n)?)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        if self.tag()? {
            visitor.visit_some(self)
        } else {
            visitor.visit_none()
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let len = self.len()?;
        visitor.visit_seq(Counted { reader: self, len })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_seq(Counted { reader: self, len })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, CodecError> {
        let len = self.len()?;
        visitor.visit_map(Counted { reader: self, len })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        visitor.visit_enum(self)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::custom("format 1 has no identifiers"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, CodecError> {
        Err(CodecError::custom("format 1 cannot skip a value"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or map: `len` of them, in order.
struct Counted<'a, 'de> {
    reader: &'a mut Reader<'de>,
    len: usize,
}

impl<'de> SeqAccess<'de> for Counted<'_, 'de> {
    type Error = CodecError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, CodecError> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Bounded by the bytes left: every element takes at least none, so
        // a hint is only safe as small as the input.
        Some(self.len.min(self.reader.input.len()))
    }
}

impl<'de> MapAccess<'de> for Counted<'_, 'de> {
    type Error = CodecError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, CodecError> {
        if self.len == 0 {
            return Ok(None);
        }
        self.len -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, CodecError> {
        seed.deserialize(&mut *self.reader)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len.min(self.reader.input.len()))
    }
}

impl<'de> EnumAccess<'de> for &mut Reader<'de> {
    type Error = CodecError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self), CodecError> {
        let index = self.u32()?;
        let index: de::value::U32Deserializer<CodecError> = index.into_deserializer();
        let value = seed.deserialize(index)?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for &mut Reader<'de> {
    type Error = CodecError;

    fn unit_variant(self) -> Result<(), CodecError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, CodecError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, CodecError> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    enum Shape {
        Empty,
        Wrapped(u16),
        Pair(u8, bool),
        Named { label: String, at: Option<i64> },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Record {
        id: String,
        shapes: Vec<Shape>,
        map: BTreeMap<String, u32>,
        bytes: [u8; 3],
        c: char,
    }

    /// What `bincode::serialize` wrote for a `Record`, byte by byte (from
    /// its specification; bincode is no longer built here).
    fn written() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(2u64.to_le_bytes());
        b.extend(b"ab");
        b.extend(4u64.to_le_bytes());
        b.extend(0u32.to_le_bytes()); // Empty
        b.extend(1u32.to_le_bytes()); // Wrapped(513)
        b.extend(513u16.to_le_bytes());
        b.extend(2u32.to_le_bytes()); // Pair(7, true)
        b.extend([7, 1]);
        b.extend(3u32.to_le_bytes()); // Named { "x", Some(-2) }
        b.extend(1u64.to_le_bytes());
        b.extend(b"x");
        b.push(1);
        b.extend((-2i64).to_le_bytes());
        b.extend(1u64.to_le_bytes()); // map { "k": 9 }
        b.extend(1u64.to_le_bytes());
        b.extend(b"k");
        b.extend(9u32.to_le_bytes());
        b.extend([1, 2, 3]); // [u8; 3]: a tuple, no length
        b.extend("é".as_bytes());
        b
    }

    #[test]
    fn reads_what_format_1_wrote() {
        let r: Record = decode(&written()).unwrap();
        assert_eq!(
            r,
            Record {
                id: "ab".into(),
                shapes: vec![
                    Shape::Empty,
                    Shape::Wrapped(513),
                    Shape::Pair(7, true),
                    Shape::Named {
                        label: "x".into(),
                        at: Some(-2)
                    },
                ],
                map: [("k".to_owned(), 9)].into(),
                bytes: [1, 2, 3],
                c: 'é',
            }
        );
    }

    #[test]
    fn refuses_short_long_and_lying_input() {
        let full = written();
        for cut in 0..full.len() {
            assert!(decode::<Record>(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = full.clone();
        extra.push(0);
        assert!(decode::<Record>(&extra).is_err());
        // A length far beyond the input is refused, not allocated.
        let mut vast = u64::MAX.to_le_bytes().to_vec();
        vast.extend([0; 8]);
        assert!(decode::<Vec<u64>>(&vast).is_err());
        // A variant that does not exist, a bool that is not 0 or 1.
        assert!(decode::<Shape>(&9u32.to_le_bytes()).is_err());
        assert!(decode::<bool>(&[2]).is_err());
    }
}
