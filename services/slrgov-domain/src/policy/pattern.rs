//! Wildcard patterns: `Action` and `Resource` values compiled once and
//! matched without backtracking.

use std::fmt;

use super::{PolicyVersion, StatementMatch};

/// One token of a compiled wildcard pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// A character that must be present as is.
    Literal(char),
    /// `?`: exactly one character.
    AnyChar,
    /// `*` (or a policy variable): any run of characters, possibly empty.
    AnySequence,
}

/// A compiled `Action` or `Resource` pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    tokens: Vec<Token>,
    has_variable: bool,
}

impl Pattern {
    /// An action pattern: compared case-insensitively, no variables.
    pub(super) fn action(text: &str) -> Self {
        let lowered = text.to_lowercase();
        let tokens = compile(lowered.chars(), false).0;
        Pattern {
            text: text.to_owned(),
            tokens,
            has_variable: false,
        }
    }

    /// A resource pattern: compared case-sensitively; policy variables in
    /// version 2012-10-17 documents.
    pub(super) fn resource(text: &str, version: PolicyVersion) -> Self {
        let (tokens, has_variable) =
            compile(text.chars(), matches!(version, PolicyVersion::V2012_10_17));
        Pattern {
            text: text.to_owned(),
            tokens,
            has_variable,
        }
    }

    /// The pattern as written in the document.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the pattern holds a policy variable (so it can only match
    /// conditionally).
    pub fn has_variable(&self) -> bool {
        self.has_variable
    }

    pub(super) fn matches_action(&self, lowered_action: &[char]) -> bool {
        match_tokens(&self.tokens, lowered_action)
    }

    pub(super) fn matches_resource(&self, resource: &[char]) -> StatementMatch {
        if !match_tokens(&self.tokens, resource) {
            StatementMatch::No
        } else if self.has_variable {
            StatementMatch::Conditional
        } else {
            StatementMatch::Yes
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Compiles a wildcard pattern into tokens. With `variables`, `${...}` is
/// a policy variable (an [`Token::AnySequence`], flagged) except for the
/// escapes `${*}`, `${?}` and `${$}`; an unterminated `${` is literal.
/// Returns the tokens and whether a variable was seen.
fn compile(chars: impl Iterator<Item = char>, variables: bool) -> (Vec<Token>, bool) {
    let chars: Vec<char> = chars.collect();
    let mut tokens = Vec::with_capacity(chars.len());
    let mut has_variable = false;
    let push = |tokens: &mut Vec<Token>, token: Token| {
        // Consecutive stars are one star.
        if !(token == Token::AnySequence && tokens.last() == Some(&Token::AnySequence)) {
            tokens.push(token);
        }
    };
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if variables && c == '$' && chars.get(i + 1) == Some(&'{') {
            let close = chars
                .get(i + 2..)
                .and_then(|rest| rest.iter().position(|&x| x == '}'))
                .map(|offset| i + 2 + offset);
            if let Some(close) = close {
                let inner: String = chars.get(i + 2..close).unwrap_or_default().iter().collect();
                match inner.as_str() {
                    "*" => push(&mut tokens, Token::Literal('*')),
                    "?" => push(&mut tokens, Token::Literal('?')),
                    "$" => push(&mut tokens, Token::Literal('$')),
                    "" => {
                        // `${}` is no variable: keep the text literally.
                        push(&mut tokens, Token::Literal('$'));
                        push(&mut tokens, Token::Literal('{'));
                        push(&mut tokens, Token::Literal('}'));
                    }
                    _ => {
                        has_variable = true;
                        push(&mut tokens, Token::AnySequence);
                    }
                }
                i = close + 1;
                continue;
            }
        }
        let token = match c {
            '*' => Token::AnySequence,
            '?' => Token::AnyChar,
            other => Token::Literal(other),
        };
        push(&mut tokens, token);
        i += 1;
    }
    (tokens, has_variable)
}

/// Matches compiled tokens against text with the classic iterative
/// two-pointer algorithm: on a mismatch, retry from the most recent `*`
/// with it absorbing one more character. Time is O(pattern × text) at
/// worst, memory O(1); there is no recursion and no exponential
/// backtracking.
fn match_tokens(pattern: &[Token], text: &[char]) -> bool {
    let mut p = 0;
    let mut t = 0;
    // The pattern index just after the last `*` seen, and the text index
    // that star's run currently ends at.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match pattern.get(p) {
            Some(Token::AnySequence) => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(Token::AnyChar) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(Token::Literal(expected)) if *expected == c => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((after_star, run_end)) => {
                star = Some((after_star, run_end + 1));
                p = after_star;
                t = run_end + 1;
            }
            None => return false,
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|token| *token == Token::AnySequence))
}

/// Matches `text` against a wildcard `pattern` case-sensitively, IAM
/// resource style: `*` is any run of characters (including `:` and `/`),
/// `?` is one character, everything else is literal (no policy variables).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let tokens = compile(pattern.chars(), false).0;
    let text: Vec<char> = text.chars().collect();
    match_tokens(&tokens, &text)
}

/// Matches an IAM action (`service:Action`) against an action pattern,
/// case-insensitively, with `*` and `?` wildcards.
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let lowered: Vec<char> = action.to_lowercase().chars().collect();
    Pattern::action(pattern).matches_action(&lowered)
}
