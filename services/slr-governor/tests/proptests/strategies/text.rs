//! Strings: anything, edits of valid values, free text.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

pub fn owned(values: &'static [&'static str]) -> BoxedStrategy<String> {
    select(values).prop_map(str::to_owned).boxed()
}

/// A long string: a short chunk repeated to 1 to 100 KB.
pub fn huge() -> BoxedStrategy<String> {
    (vec(any::<char>(), 1..6), 1_000usize..100_000)
        .prop_map(|(chunk, len)| {
            let chunk: String = chunk.into_iter().collect();
            let mut text = String::with_capacity(len + chunk.len());
            while text.len() < len {
                text.push_str(&chunk);
            }
            text
        })
        .boxed()
}

/// Anything: empty, unicode, printable, control characters, huge.
pub fn junk() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(String::new()),
        3 => vec(any::<char>(), 1..40).prop_map(String::from_iter),
        3 => "[ -~]{1,40}",
        1 => vec(proptest::char::range('\0', '\u{1f}'), 1..6).prop_map(String::from_iter),
        1 => owned(&[" ", "\u{0}", "../", "%2F", "\u{202e}", "\u{feff}1", "🦀", "null", "*", "-"]),
        1 => huge(),
    ]
    .boxed()
}

/// One edit of a string.
#[derive(Debug, Clone)]
pub enum Edit {
    Insert(Index, char),
    Remove(Index),
    Replace(Index, char),
    Truncate(Index),
    Append(String),
    Prepend(String),
    Upper,
    Pad,
    Double,
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::Insert(i, c)),
        any::<Index>().prop_map(Edit::Remove),
        (any::<Index>(), any::<char>()).prop_map(|(i, c)| Edit::Replace(i, c)),
        any::<Index>().prop_map(Edit::Truncate),
        junk().prop_map(Edit::Append),
        junk().prop_map(Edit::Prepend),
        Just(Edit::Upper),
        Just(Edit::Pad),
        Just(Edit::Double),
    ]
}

pub fn apply(text: String, edit: &Edit) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    match edit {
        Edit::Insert(at, c) => {
            let at = at.index(chars.len() + 1);
            chars.insert(at, *c);
        }
        Edit::Remove(at) if !chars.is_empty() => {
            chars.remove(at.index(chars.len()));
        }
        Edit::Replace(at, c) if !chars.is_empty() => {
            let at = at.index(chars.len());
            chars[at] = *c;
        }
        Edit::Truncate(at) => chars.truncate(at.index(chars.len() + 1)),
        Edit::Append(more) => return text + more,
        Edit::Prepend(more) => return more.clone() + &text,
        Edit::Upper => return text.to_uppercase(),
        Edit::Pad => return format!(" {text}\t"),
        Edit::Double => return text.repeat(2),
        Edit::Remove(_) | Edit::Replace(..) => {}
    }
    chars.into_iter().collect()
}

/// `valid` with one to three edits.
pub fn mutated(valid: BoxedStrategy<String>) -> BoxedStrategy<String> {
    (valid, vec(edit(), 1..4))
        .prop_map(|(text, edits)| edits.iter().fold(text, apply))
        .boxed()
}

/// Mostly `valid`, sometimes `valid` edited, sometimes anything.
pub fn field(valid: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        8 => valid.clone(),
        3 => mutated(valid),
        1 => junk(),
    ]
    .boxed()
}

/// Mostly empty (a feature not used), else valid, edited or anything.
pub fn optional_field(valid: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        6 => Just(String::new()),
        2 => valid.clone(),
        1 => mutated(valid),
        1 => junk(),
    ]
    .boxed()
}

/// Free text: printable, unicode, control characters, at and over `max`.
pub fn text(max: usize) -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[ -~]{0,40}",
        2 => "[\\t\\n\\r -~\u{a1}-\u{ff}]{0,60}",
        2 => vec(any::<char>(), 0..40).prop_map(String::from_iter),
        1 => (0..3usize).prop_map(move |extra| "é".repeat(max - 1 + extra)),
        1 => junk(),
    ]
    .boxed()
}

pub fn description() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just(String::new()),
        3 => "[\\t\\n\\r -~\u{a1}-\u{ff}]{0,60}",
        1 => (0..3usize).prop_map(|extra| "d".repeat(999 + extra)),
        1 => vec(any::<char>(), 1..30).prop_map(String::from_iter),
        1 => junk(),
    ]
    .boxed()
}
