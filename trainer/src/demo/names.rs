//! Made-up but pronounceable names, so nothing in the world is known from
//! anywhere else: a model can only learn a fact from the warm-start data or
//! find it by search.
//!
//! Town names are two words from two small pools ("Krai Vorlak"), so each
//! word is a frequent token: a tiny model learns in minutes to copy a word
//! it has seen often out of a search result, where copying a token it has
//! never been trained on (a one-off name) takes far longer than the demo.

use rand::Rng;
use rand::seq::SliceRandom;
use std::collections::BTreeSet;

const ONSETS: [&str; 22] = [
    "b", "br", "d", "dr", "f", "g", "gr", "k", "kr", "l", "m", "n", "p", "r", "s", "st", "t", "tr",
    "v", "z", "th", "sh",
];
const VOWELS: [&str; 8] = ["a", "e", "i", "o", "u", "ai", "ou", "ea"];
const CODAS: [&str; 10] = ["", "n", "r", "l", "k", "s", "m", "th", "nd", "rn"];

const REGION_SUFFIXES: [&str; 8] = [
    "moor", "vale", "fell", "mark", "wold", "dale", "holt", "reach",
];
const SURNAME_SUFFIXES: [&str; 6] = ["son", "er", "ley", "well", "ford", "by"];
pub const FIRST_NAMES: [&str; 20] = [
    "Ada", "Bram", "Cora", "Dov", "Elin", "Finn", "Greta", "Hugo", "Ines", "Jon", "Kira", "Lev",
    "Mira", "Nils", "Oda", "Pia", "Rolf", "Sana", "Tove", "Ulf",
];
/// What towns are famous for: ordinary words, single answers.
pub const PRODUCTS: [&str; 16] = [
    "glass", "wool", "salt", "cheese", "silk", "copper", "honey", "pottery", "timber", "lace",
    "wine", "paper", "iron", "bread", "rope", "tea",
];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn syllable<R: Rng + ?Sized>(rng: &mut R, coda: bool) -> String {
    let mut s = String::new();
    s.push_str(ONSETS[rng.random_range(0..ONSETS.len())]);
    s.push_str(VOWELS[rng.random_range(0..VOWELS.len())]);
    if coda {
        s.push_str(CODAS[rng.random_range(0..CODAS.len())]);
    }
    s
}

/// Draws names until `n` new ones (not in `taken`) are found; records them in `taken`.
fn draw<R: Rng>(
    n: usize,
    taken: &mut BTreeSet<String>,
    rng: &mut R,
    make: impl Fn(&mut R) -> String,
) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let name = make(rng);
        // Lower-case keys: answers are compared after lower-casing.
        if name.len() >= 4 && taken.insert(name.to_lowercase()) {
            out.push(name);
        }
    }
    out
}

/// `n` distinct two-word town names such as "Krai Vorlak": every pairing of
/// two pools of words, each pool about √n + 4 words, shuffled.
pub fn towns<R: Rng>(n: usize, taken: &mut BTreeSet<String>, rng: &mut R) -> Vec<String> {
    let side = (n as f64).sqrt().ceil() as usize + 4;
    let firsts = draw(side, taken, rng, |r| capitalise(&syllable(r, true)));
    let seconds = draw(side, taken, rng, |r| {
        capitalise(&format!("{}{}", syllable(r, false), syllable(r, true)))
    });
    let mut all: Vec<String> = firsts
        .iter()
        .flat_map(|a| seconds.iter().map(move |b| format!("{a} {b}")))
        .collect();
    all.shuffle(rng);
    all.truncate(n);
    for name in &all {
        taken.insert(name.to_lowercase());
    }
    all
}

/// Region names such as "Drennmoor".
pub fn regions<R: Rng>(n: usize, taken: &mut BTreeSet<String>, rng: &mut R) -> Vec<String> {
    draw(n, taken, rng, |r| {
        let suffix = REGION_SUFFIXES[r.random_range(0..REGION_SUFFIXES.len())];
        capitalise(&format!("{}{suffix}", syllable(r, true)))
    })
}

/// Founders as "First Surname"; surnames are unique, so a surname alone
/// is an accepted answer.
pub fn founders<R: Rng>(
    n: usize,
    taken: &mut BTreeSet<String>,
    rng: &mut R,
) -> Vec<(String, String)> {
    let surnames = draw(n, taken, rng, |r| {
        let suffix = SURNAME_SUFFIXES[r.random_range(0..SURNAME_SUFFIXES.len())];
        capitalise(&format!("{}{suffix}", syllable(r, true)))
    });
    surnames
        .into_iter()
        .map(|s| {
            (
                FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())].to_string(),
                s,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn names_are_unique_across_kinds() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut taken: BTreeSet<String> = PRODUCTS.iter().map(|p| p.to_string()).collect();
        let t = towns(300, &mut taken, &mut rng);
        let r = regions(10, &mut taken, &mut rng);
        let f = founders(30, &mut taken, &mut rng);
        let all: BTreeSet<String> = t
            .iter()
            .chain(&r)
            .chain(f.iter().map(|(_, s)| s))
            .map(|s| s.to_lowercase())
            .collect();
        assert_eq!(all.len(), 340);
        assert!(t.iter().all(|n| {
            let words: Vec<&str> = n.split(' ').collect();
            words.len() == 2
                && words
                    .iter()
                    .all(|w| w.chars().next().unwrap().is_uppercase() && w.len() >= 4)
        }));
        // Two pools of about √300 + 4 words each: every word is used often.
        let words: BTreeSet<&str> = t.iter().flat_map(|n| n.split(' ')).collect();
        assert!(words.len() <= 2 * 22, "{} words", words.len());
    }
}
