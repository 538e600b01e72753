//! Random inputs and pathological patterns: no panics, no blow-ups, and
//! agreement with a reference matcher.

use super::*;

/// A small deterministic xorshift generator: no dependency needed.
struct Rng(u64);

impl Rng {
    fn step(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.step() % n as u64) as usize
    }
    fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

/// An obviously correct (but slow) reference matcher: dynamic
/// programming over prefixes.
fn reference_match(pattern: &[char], text: &[char]) -> bool {
    let mut table = vec![vec![false; text.len() + 1]; pattern.len() + 1];
    table[0][0] = true;
    for p in 1..=pattern.len() {
        for t in 0..=text.len() {
            table[p][t] = match pattern[p - 1] {
                '*' => table[p - 1][t] || (t > 0 && table[p][t - 1]),
                '?' => t > 0 && table[p - 1][t - 1],
                c => t > 0 && text[t - 1] == c && table[p - 1][t - 1],
            };
        }
    }
    table[pattern.len()][text.len()]
}

#[test]
fn random_inputs_never_panic_and_agree_with_the_reference() {
    let alphabet = [
        'a', 'b', 'A', ':', '/', '*', '?', '$', '{', '}', '-', 'é', '日', '\u{0}',
    ];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let pattern = rng.string(&alphabet, 12);
        let text = rng.string(&alphabet, 16);
        let got = wildcard_match(&pattern, &text);
        let chars: Vec<char> = pattern.chars().collect();
        let expected = reference_match(&chars, &text.chars().collect::<Vec<_>>());
        assert_eq!(got, expected, "pattern {pattern:?} text {text:?}");
        // The other entry points must not panic either.
        let _ = action_matches(&pattern, &text);
        let resource = Pattern::resource(&pattern, PolicyVersion::V2012_10_17);
        let _ = resource.matches_resource(&text.chars().collect::<Vec<_>>());
        // Every text matches itself once wildcards are absent, and `*`
        // matches everything.
        if !pattern.contains(['*', '?']) {
            assert!(wildcard_match(&pattern, &pattern));
        }
        assert!(wildcard_match("*", &text));
    }
}

#[test]
fn random_documents_never_panic() {
    let alphabet = [
        '{', '}', '[', ']', '"', ':', ',', ' ', 'A', 'S', '*', '%', '7', 'B', '2', '+',
    ];
    let fragments = [
        "\"Statement\"",
        "\"Effect\"",
        "\"Allow\"",
        "\"Deny\"",
        "\"Action\"",
        "\"Resource\"",
        "\"NotAction\"",
        "\"Condition\"",
        "\"Version\"",
        "\"2012-10-17\"",
        "\"s3:*\"",
        "\"*\"",
    ];
    let mut rng = Rng(42);
    for _ in 0..5_000 {
        let mut text = String::new();
        for _ in 0..rng.below(24) {
            if rng.below(3) == 0 {
                text.push_str(fragments[rng.below(fragments.len())]);
            } else {
                text.push_str(&rng.string(&alphabet, 3));
            }
        }
        let _ = PolicyDocument::parse(&text);
        let _ = PolicyDocument::parse_url_encoded(&text);
    }
}

#[test]
fn pathological_patterns_are_fast() {
    let text = "a".repeat(5_000);
    let pattern = format!("{}b", "a*".repeat(500));
    let start = std::time::Instant::now();
    assert!(!wildcard_match(&pattern, &text));
    assert!(wildcard_match(&"*a".repeat(500), &text));
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}
