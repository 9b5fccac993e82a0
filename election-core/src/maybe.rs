//! `Maybe<T>`: an optional integer in the integer's own size.
//!
//! An idle election holds a dozen optional times, sequences and ids. As
//! `Option<u64>` each takes 16 bytes; here each takes 8, one value of the
//! type's range standing for "none" (issue 13's 2 KiB per election). The
//! value given up is one no clock, counter or ZooKeeper sequence reaches.

use std::fmt;

/// An integer with a value left over to mean "none".
pub trait Niche: Copy + Eq {
    const NONE: Self;
}

impl Niche for u64 {
    /// Milliseconds and counters: never reached.
    const NONE: Self = u64::MAX;
}

impl Niche for i64 {
    /// ZooKeeper sequences live in 32 bits: never reached.
    const NONE: Self = i64::MIN;
}

/// `Option<T>` in the size of `T`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Maybe<T: Niche>(T);

impl<T: Niche> Maybe<T> {
    pub const NONE: Self = Maybe(T::NONE);

    /// `Some(value)`. Panics on the reserved value, in debug builds.
    pub fn some(value: T) -> Self {
        debug_assert!(value != T::NONE, "the reserved value cannot be stored");
        Maybe(value)
    }

    pub fn get(self) -> Option<T> {
        (self.0 != T::NONE).then_some(self.0)
    }

    pub fn is_some(self) -> bool {
        self.0 != T::NONE
    }

    pub fn is_none(self) -> bool {
        self.0 == T::NONE
    }

    pub fn set(&mut self, value: Option<T>) {
        *self = value.into();
    }

    pub fn take(&mut self) -> Option<T> {
        std::mem::replace(self, Self::NONE).get()
    }
}

impl<T: Niche> Default for Maybe<T> {
    fn default() -> Self {
        Self::NONE
    }
}

impl<T: Niche> From<Option<T>> for Maybe<T> {
    fn from(value: Option<T>) -> Self {
        value.map_or(Self::NONE, Self::some)
    }
}

impl<T: Niche + fmt::Debug> fmt::Debug for Maybe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_an_option_holds_in_half_the_bytes() {
        assert_eq!(std::mem::size_of::<Maybe<u64>>(), 8);
        assert_eq!(std::mem::size_of::<Option<u64>>(), 16);
        let mut m: Maybe<i64> = Maybe::some(-5);
        assert_eq!(m.get(), Some(-5));
        assert_eq!(m.take(), Some(-5));
        assert!(m.is_none());
        assert_eq!(Maybe::from(Some(0u64)).get(), Some(0));
        assert_eq!(Maybe::<u64>::from(None), Maybe::NONE);
        assert_eq!(format!("{:?}", Maybe::some(7u64)), "Some(7)");
    }
}
