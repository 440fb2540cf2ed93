//! Masking helpers the channels share.

/// The first `n` characters, then `***` (just `***` when that is all there is).
pub fn keep_start(s: &str, n: usize) -> String {
    let head: String = s.chars().take(n).collect();
    if head.len() == s.len() {
        "***".to_owned()
    } else {
        format!("{head}***")
    }
}
