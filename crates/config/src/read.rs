//! Reading the document into the owners' types, keeping every value's position for errors.
//!
//! A section's table may hold the keys of several structs (`[smtp]`: the server's own and
//! the session's limits). [`Section::part`] gives each struct its own keys, as the struct
//! declares them; a key that no struct of its section declares is refused by
//! [`Section::finish`] with the known keys of the whole section. The values are
//! deserialized from the parsed document (`DeValue`), so an error keeps its span.

use serde::de::{self, DeserializeOwned, Visitor};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::validate::{error_at_span, from_toml};
use crate::{Error, Source};

/// One top-level table of the document, read part by part.
pub(crate) struct Section<'i, 's> {
    source: &'s Source,
    name: String,
    value: Spanned<DeValue<'i>>,
    /// The keys of the parts read so far, in their declaration order.
    known: Vec<&'static str>,
}

impl<'i, 's> Section<'i, 's> {
    pub(crate) fn new(source: &'s Source, name: String, value: Spanned<DeValue<'i>>) -> Self {
        Section { source, name, value, known: Vec::new() }
    }

    /// An empty section, for listing its keys.
    #[cfg(test)]
    pub(crate) fn empty(source: &'s Source, name: &str) -> Self {
        Section::new(source, name.to_string(), Spanned::new(0..0, DeValue::Table(DeTable::new())))
    }

    /// Reads `T` from the keys `T` declares, leaving the others to the next part.
    pub(crate) fn part<T: DeserializeOwned>(&mut self) -> Result<T, Error> {
        let fields = keys_of::<T>();
        assert!(!fields.is_empty(), "a part of a section is a struct with named fields");
        self.known.extend_from_slice(fields);
        let span = self.value.span();
        let DeValue::Table(table) = self.value.get_mut() else {
            // Not a table: `T`'s own error says what was found instead.
            return T::deserialize(ValueDeserializer::from(self.value.clone())).map_err(|e| from_toml(self.source, e));
        };
        let mut mine = DeTable::new();
        let mut rest = DeTable::new();
        for (key, value) in std::mem::take(table) {
            match fields.contains(&key.get_ref().as_ref()) {
                true => mine.insert(key, value),
                false => rest.insert(key, value),
            };
        }
        *table = rest;
        T::deserialize(ValueDeserializer::from(Spanned::new(span, DeValue::Table(mine))))
            .map_err(|e| from_toml(self.source, e))
    }

    /// Refuses a key that no part declared.
    pub(crate) fn finish(self) -> Result<Vec<&'static str>, Error> {
        if let DeValue::Table(table) = self.value.get_ref()
            && let Some((key, _)) = table.iter().next()
        {
            return Err(unknown(self.source, key, &format!("{}.{}", self.name, key.get_ref()), &self.known));
        }
        Ok(self.known)
    }
}

/// The error for a key no struct declares: it lists the known ones, as serde would.
pub(crate) fn unknown(source: &Source, key: &Spanned<std::borrow::Cow<'_, str>>, path: &str, known: &[&str]) -> Error {
    let known: Vec<String> = known.iter().map(|key| format!("`{key}`")).collect();
    let problem = format!("unknown key `{}` (known keys: {})", key.get_ref(), known.join(", "));
    error_at_span(source, key.span(), path, problem)
}

/// The keys a struct declares: serde hands its field names to `deserialize_struct`.
pub(crate) fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(KeysOf(&mut fields));
    fields
}

struct KeysOf<'a>(&'a mut &'static [&'static str]);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stop")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for KeysOf<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}
