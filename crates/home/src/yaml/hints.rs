//! The wording every error shares: user values quoted on one line, key paths
//! (`plugins.zwave.stopTimeout`, `autostart[2]`), and the nearest valid word for a typo.

/// A user-supplied value in backticks, escaped so it stays on one line.
pub fn quote(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

/// Appends `key` to a key path, quoting keys that would make the path ambiguous.
pub fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let seg = if plain {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if path.is_empty() {
        seg
    } else {
        format!("{path}.{seg}")
    }
}

/// `path[i]`, the key path of a list item.
pub fn item_key(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The candidate closest to `word`, if close enough to be a likely typo. Case, `_` and `-` are
/// ignored, so `ready_timeout` finds `readyTimeout`.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let w = norm(word);
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let n = norm(c);
            let allowed = (n.chars().count() / 4).clamp(1, 3);
            // Optimal string alignment: Levenshtein plus adjacent transpositions, so
            // `autostrat` is one edit from `autostart`.
            (strsim::osa_distance(&w, &n), allowed, c)
        })
        .filter(|(d, allowed, _)| d <= allowed)
        .min_by_key(|(d, _, _)| *d)
        .map(|(_, _, c)| c)
}

/// `"; did you mean `x`?"` or nothing, for value suggestions inside messages.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    nearest(word, candidates)
        .map(|c| format!("; did you mean `{c}`?"))
        .unwrap_or_default()
}
