//! The field generators: mostly valid values (often the fixture's), edited
//! ones, near misses and anything at all; and `message!`, which makes the
//! generator of a message from one generator per field.

/// The boxed strategy of the message `$ty`, each field drawn from its own
/// strategy: `message!(pb::GetAccountRequest { name: account_name(fx) })`.
/// The strategies nest in pairs, so a message may have any number of
/// fields (a tuple strategy has at most twelve).
macro_rules! message {
    (@values $one:expr) => { $one };
    (@values $first:expr, $($rest:expr),+) => { ($first, message!(@values $($rest),+)) };
    (@fields $one:ident) => { $one };
    (@fields $first:ident, $($rest:ident),+) => { ($first, message!(@fields $($rest),+)) };
    ($($ty:ident)::+ { $($field:ident: $strategy:expr),+ $(,)? }) => {
        message!(@values $($strategy),+)
            .prop_map(|message!(@fields $($field),+)| $($ty)::+ { $($field),+ })
            .boxed()
    };
}

mod names;
mod resources;
mod text;
mod values;

pub use names::*;
pub use resources::*;
pub use text::*;
pub use values::*;
