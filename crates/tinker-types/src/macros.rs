//! Declarative helpers for the two recurring wire shapes.

/// A string enum sent by the server: known values get a variant, anything else is kept in
/// `Unknown(String)` instead of failing, so a newer server does not break an older client.
macro_rules! open_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )*
            /// A value this SDK version does not know, kept verbatim.
            Unknown(String),
        }

        impl $name {
            /// The wire spelling of this value.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $wire, )*
                    Self::Unknown(other) => other,
                }
            }

            /// Maps a wire string to a value (unknown strings are kept, never refused).
            pub fn from_wire(value: &str) -> Self {
                match value {
                    $( $wire => Self::$variant, )*
                    other => Self::Unknown(other.to_owned()),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::convert::Infallible;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Ok(Self::from_wire(value))
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::from_wire(value)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = <::std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Ok(Self::from_wire(&value))
            }
        }
    };
}

/// A request struct whose JSON ends with a constant `"type"` discriminator, as the SDK emits
/// it (fields in declaration order, then `type`). Decoding accepts the struct with or without
/// the `type` key. Field attributes are shared by both directions; in `skip_serializing_if`
/// use `crate::json::is_none` (the serializer sees the fields by reference).
macro_rules! type_last_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident = $tag:literal {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(::serde::Deserialize)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// The value of this request's `"type"` discriminator.
            pub const TYPE: &'static str = $tag;
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                #[derive(::serde::Serialize)]
                #[serde(rename = $tag)]
                struct Wire<'a> {
                    $( $(#[$fmeta])* $field: &'a $ty, )*
                    #[serde(rename = "type")]
                    __type_tag: &'static str,
                }
                Wire { $( $field: &self.$field, )* __type_tag: $tag }.serialize(serializer)
            }
        }
    };
}

/// A server-sent union discriminated by a string key: each known value maps to a struct
/// (which serializes its own discriminator), anything else is kept as raw JSON in
/// `Unknown(serde_json::Value)` instead of failing. A known discriminator whose body does
/// not decode is an error naming the missing field.
macro_rules! open_union {
    (
        $(#[$meta:meta])*
        pub enum $name:ident tag $tag:literal {
            $( $(#[$vmeta:meta])* $variant:ident($inner:ty) = $wire:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant($inner), )*
            /// A variant this SDK version does not know, kept verbatim.
            Unknown(::serde_json::Value),
        }

        impl $name {
            /// The discriminator value of this variant.
            pub fn kind(&self) -> &str {
                match self {
                    $( Self::$variant(_) => $wire, )*
                    Self::Unknown(value) => value.get($tag).and_then(::serde_json::Value::as_str).unwrap_or(""),
                }
            }
        }

        $(
            impl From<$inner> for $name {
                fn from(inner: $inner) -> Self {
                    Self::$variant(inner)
                }
            }
        )*

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(inner) => inner.serialize(serializer), )*
                    Self::Unknown(value) => value.serialize(serializer),
                }
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = ::serde_json::Value::deserialize(deserializer)?;
                let kind = value.get($tag).and_then(::serde_json::Value::as_str).map(str::to_owned);
                match kind.as_deref() {
                    $( Some($wire) => ::serde_json::from_value(value)
                        .map(Self::$variant)
                        .map_err(<D::Error as ::serde::de::Error>::custom), )*
                    Some(_) => Ok(Self::Unknown(value)),
                    None => Err(<D::Error as ::serde::de::Error>::custom(
                        concat!("missing field `", $tag, "`"),
                    )),
                }
            }
        }
    };
}

pub(crate) use {open_enum, open_union, type_last_struct};
