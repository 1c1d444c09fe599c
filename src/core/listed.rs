//! `listed_enum!`: a fieldless enum whose every variant has a fixed label, with the list of all
//! variants generated from the same definition, so that the list is exhaustive by construction
//! (a counter per label, a test per variant).

/// Declares `pub enum $name { $variant, … }` with `ALL` (every variant, in order) and
/// `label()` (the string given for each variant).
#[macro_export]
macro_rules! listed_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $label:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn label(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    listed_enum! {
        pub enum Colour { Red = "red", Green = "green" }
    }

    #[test]
    fn lists_every_variant_with_its_label() {
        let labels: Vec<_> = Colour::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(labels, ["red", "green"]);
    }
}
