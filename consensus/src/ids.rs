//! Typed numbers: a view, an epoch, a height and an operator's index are all `uint64` on the
//! wire, and nothing else about them is alike. Each is its own type here so that one cannot be
//! passed where another is meant (a view where a height is expected compiles to nothing).
//!
//! The types encode exactly as SSZ `uint64` (the containers of `types` hold them directly, so
//! roots and encodings are unchanged) and as a bare JSON number. Arithmetic is explicit and
//! saturating: ids come from the wire, and none may wrap.

use std::fmt;

use ssz_rs::prelude::*;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            pub const ZERO: Self = Self(0);

            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The number itself, for encodings, metrics and logs.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The one after this (saturating at `u64::MAX`).
            #[must_use]
            pub const fn next(self) -> Self {
                Self(self.0.saturating_add(1))
            }

            /// The one before this, if there is one.
            pub const fn previous(self) -> Option<Self> {
                self.checked_sub(1)
            }

            /// `n` after this, saturating at `u64::MAX`.
            #[must_use]
            pub const fn saturating_add(self, n: u64) -> Self {
                Self(self.0.saturating_add(n))
            }

            /// `n` before this, saturating at zero.
            #[must_use]
            pub const fn saturating_sub(self, n: u64) -> Self {
                Self(self.0.saturating_sub(n))
            }

            /// `n` after this, or `None` past `u64::MAX`.
            pub const fn checked_add(self, n: u64) -> Option<Self> {
                match self.0.checked_add(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `n` before this, or `None` below zero.
            pub const fn checked_sub(self, n: u64) -> Option<Self> {
                match self.0.checked_sub(n) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// How far `self` is past `earlier` (zero when it is not past it).
            pub const fn since(self, earlier: Self) -> u64 {
                self.0.saturating_sub(earlier.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Sized for $name {
            fn is_variable_size() -> bool {
                false
            }
            fn size_hint() -> usize {
                <u64 as Sized>::size_hint()
            }
        }

        impl Serialize for $name {
            fn serialize(&self, buffer: &mut Vec<u8>) -> Result<usize, SerializeError> {
                self.0.serialize(buffer)
            }
        }

        impl Deserialize for $name {
            fn deserialize(encoding: &[u8]) -> Result<Self, DeserializeError> {
                u64::deserialize(encoding).map(Self)
            }
        }

        impl Merkleized for $name {
            fn hash_tree_root(&mut self) -> Result<Node, MerkleizationError> {
                self.0.hash_tree_root()
            }
        }

        impl SimpleSerialize for $name {
            fn is_composite_type() -> bool {
                false
            }
        }
    };
}

id! {
    /// View number inside one epoch (views restart at 0 in every epoch).
    View
}

id! {
    /// Epoch number: one Simplex instance with one operator set.
    Epoch
}

id! {
    /// Height of a block: its distance from genesis in parent links (genesis is 0).
    Height
}

id! {
    /// Index of an operator in its epoch's operator set (position in `OperatorSet::operators`).
    OperatorIndex
}

impl OperatorIndex {
    /// The index as a position in the epoch's operator list (`None` beyond `usize`).
    pub fn position(self) -> Option<usize> {
        usize::try_from(self.0).ok()
    }

    /// The operator at `position` of a set.
    pub fn at(position: usize) -> Self {
        Self(position as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_encode_and_hash_as_uint64() {
        let mut view = View::new(0x0102_0304_0506_0708);
        let mut raw = 0x0102_0304_0506_0708u64;
        assert_eq!(serialize(&view).unwrap(), serialize(&raw).unwrap());
        assert_eq!(view.hash_tree_root().unwrap(), raw.hash_tree_root().unwrap());
        let bytes = serialize(&raw).unwrap();
        assert_eq!(View::deserialize(&bytes).unwrap(), view);
        assert!(View::deserialize(&bytes[..7]).is_err());
        assert_eq!(serde_json::to_string(&Height::new(7)).unwrap(), "7");
    }

    #[test]
    fn id_arithmetic_saturates() {
        assert_eq!(View::ZERO.previous(), None);
        assert_eq!(View::new(u64::MAX).next(), View::new(u64::MAX));
        assert_eq!(Height::new(3).saturating_sub(5), Height::ZERO);
        assert_eq!(Height::new(9).since(Height::new(4)), 5);
        assert_eq!(Height::new(4).since(Height::new(9)), 0);
    }
}
