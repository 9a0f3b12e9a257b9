//! tiktoken-format tokenizers (Kimi: `tiktoken.model` + `tokenizer_config.json`) on
//! `tiktoken-rs`'s `CoreBPE`.
//!
//! The rank file holds one `<base64 bytes> <rank>` per line. Special tokens follow Kimi's
//! `tokenization_kimi.py`: the 256 ids after the base vocabulary are special, named by
//! `added_tokens_decoder` in `tokenizer_config.json`, else `<|reserved_token_{id}|>`.
//! Token strings use the GPT-2 byte-to-unicode alphabet, as the Python tokenizer does.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use tiktoken_rs::CoreBPE;

use crate::error::{Error, Result};
use crate::tokenizer_config::TokenizerConfig;

/// How many special-token ids follow the base vocabulary (Kimi's `num_reserved_special_tokens`).
pub const NUM_RESERVED_SPECIAL_TOKENS: u32 = 256;

/// The pre-tokenization pattern of Kimi's `tokenization_kimi.py`.
pub const KIMI_PATTERN: &str = concat!(
    r"[\p{Han}]+",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+",
);

/// A tiktoken tokenizer: ranks, special tokens and the split pattern.
pub(crate) struct TiktokenBackend {
    bpe: CoreBPE,
    encoder: HashMap<Vec<u8>, u32>,
    specials: HashMap<String, u32>,
    special_ids: HashMap<u32, String>,
}

impl std::fmt::Debug for TiktokenBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiktokenBackend")
            .field("ranks", &self.encoder.len())
            .field("specials", &self.specials.len())
            .finish_non_exhaustive()
    }
}

fn invalid(origin: &str, reason: impl Into<String>) -> Error {
    Error::Tiktoken {
        origin: origin.to_owned(),
        reason: reason.into(),
    }
}

/// Parses a `<base64> <rank>` file.
pub(crate) fn parse_ranks(bytes: &[u8], origin: &str) -> Result<HashMap<Vec<u8>, u32>> {
    let text =
        std::str::from_utf8(bytes).map_err(|e| invalid(origin, format!("not UTF-8: {e}")))?;
    let mut ranks = HashMap::new();
    let mut seen = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: &str| invalid(origin, format!("line {}: {why}", n + 1));
        let mut parts = line.split_whitespace();
        let (Some(b64), Some(rank), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `<base64 token> <rank>`"));
        };
        let token = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| bad(&format!("bad base64: {e}")))?;
        let rank: u32 = rank.parse().map_err(|e| bad(&format!("bad rank: {e}")))?;
        if !seen.insert(rank) {
            return Err(bad(&format!("rank {rank} appears twice")));
        }
        if ranks.insert(token, rank).is_some() {
            return Err(bad("token appears twice"));
        }
    }
    if ranks.is_empty() {
        return Err(invalid(origin, "no ranks"));
    }
    Ok(ranks)
}

impl TiktokenBackend {
    /// Builds the tokenizer from a rank file and an optional config.
    pub(crate) fn new(model: &[u8], config: &TokenizerConfig, origin: &str) -> Result<Self> {
        let encoder = parse_ranks(model, origin)?;
        let num_base =
            u32::try_from(encoder.len()).map_err(|_| invalid(origin, "too many ranks"))?;
        let mut special_ids: HashMap<u32, String> = (num_base
            ..num_base.saturating_add(NUM_RESERVED_SPECIAL_TOKENS))
            .map(|id| (id, format!("<|reserved_token_{id}|>")))
            .collect();
        for (id, (content, _)) in &config.added_tokens {
            special_ids.insert(*id, content.clone());
        }
        let base_ids: HashSet<u32> = encoder.values().copied().collect();
        let mut specials = HashMap::new();
        for (id, content) in &special_ids {
            if base_ids.contains(id) {
                // An added token that is also a base rank: keep the base token.
                continue;
            }
            if let Some(other) = specials.insert(content.clone(), *id) {
                return Err(invalid(
                    origin,
                    format!("special token {content:?} has two ids ({other} and {id})"),
                ));
            }
        }
        special_ids.retain(|id, content| specials.get(content) == Some(id));
        let bpe = CoreBPE::new(
            encoder.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            specials.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            KIMI_PATTERN,
        )
        .map_err(|e| invalid(origin, format!("could not build the BPE: {e}")))?;
        Ok(Self {
            bpe,
            encoder,
            specials,
            special_ids,
        })
    }

    /// Encodes text; special tokens written in the text are recognised (as the Python
    /// tokenizer does).
    pub(crate) fn encode(&self, text: &str) -> Result<Vec<u32>, crate::BoxError> {
        let allowed: HashSet<&str> = self.specials.keys().map(String::as_str).collect();
        let (ids, _) = self.bpe.encode(text, &allowed)?;
        Ok(ids)
    }

    /// Decodes ids to text (invalid UTF-8 is replaced, as Python's `errors="replace"`).
    pub(crate) fn decode(
        &self,
        ids: &[u32],
        skip_special: bool,
    ) -> Result<String, crate::BoxError> {
        let ids: Vec<u32> = if skip_special {
            ids.iter()
                .copied()
                .filter(|id| !self.special_ids.contains_key(id))
                .collect()
        } else {
            ids.to_vec()
        };
        let bytes = self.bpe.decode_bytes(&ids)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub(crate) fn token_to_id(&self, token: &str) -> Option<u32> {
        if let Some(id) = self.specials.get(token) {
            return Some(*id);
        }
        self.encoder.get(&unicode_to_bytes(token)?).copied()
    }

    pub(crate) fn id_to_token(&self, id: u32) -> Option<String> {
        if let Some(content) = self.special_ids.get(&id) {
            return Some(content.clone());
        }
        let bytes = self.bpe.decode_bytes(&[id]).ok()?;
        Some(bytes_to_unicode(&bytes))
    }

    pub(crate) fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains_key(&id)
    }

    /// Base ranks plus special tokens.
    pub(crate) fn vocab_size(&self) -> usize {
        self.encoder.len() + self.specials.len()
    }
}

/// GPT-2's byte → printable character table.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let offset = (0..b).filter(|x| !printable(*x)).count() as u32;
    char::from_u32(256 + offset).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// Bytes as a GPT-2 byte-level token string.
pub(crate) fn bytes_to_unicode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| byte_char(*b)).collect()
}

/// The inverse of [`bytes_to_unicode`]; `None` for characters outside the alphabet.
pub(crate) fn unicode_to_bytes(token: &str) -> Option<Vec<u8>> {
    token
        .chars()
        .map(|c| (0..=255u8).find(|b| byte_char(*b) == c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_alphabet_round_trips() {
        assert_eq!(bytes_to_unicode(b" hello"), "\u{120}hello");
        assert_eq!(bytes_to_unicode(b"\n"), "\u{10a}");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unicode_to_bytes(&bytes_to_unicode(&all)), Some(all));
        assert_eq!(unicode_to_bytes("\u{4e00}"), None);
    }

    #[test]
    fn rank_file_errors_name_the_line() {
        let err = parse_ranks(b"YQ== 0\nYg== 0\n", "m").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = parse_ranks(b"YQ== 0\n!!! 1\n", "m").unwrap_err();
        assert!(err.to_string().contains("base64"), "{err}");
        let err = parse_ranks(b"YQ==\n", "m").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse_ranks(b"\n\n", "m").is_err());
    }

    #[test]
    fn kimi_pattern_compiles_and_splits() {
        // Every expected piece is a whole rank, so a piece encodes to exactly one id and the
        // split is visible; a different split would fall back to single bytes.
        let text = "Hello World's 12345 你好世界\n\n  x";
        let pieces = [
            "Hello",
            " World's",
            " ",
            "123",
            "45",
            " ",
            "你好世界",
            "\n\n",
            " ",
            " x",
        ];
        let mut ranks: HashMap<Vec<u8>, u32> =
            (0..=255u8).map(|b| (vec![b], u32::from(b))).collect();
        for piece in pieces {
            let next = ranks.len() as u32;
            ranks.entry(piece.as_bytes().to_vec()).or_insert(next);
        }
        let file: String = ranks
            .iter()
            .map(|(k, v)| {
                format!(
                    "{} {v}\n",
                    base64::engine::general_purpose::STANDARD.encode(k)
                )
            })
            .collect();
        let backend =
            TiktokenBackend::new(file.as_bytes(), &TokenizerConfig::default(), "t").unwrap();
        let ids = backend.encode(text).unwrap();
        let got: Vec<String> = ids
            .iter()
            .map(|id| backend.decode(&[*id], false).unwrap())
            .collect();
        assert_eq!(got, pieces);
        assert_eq!(backend.decode(&ids, false).unwrap(), text);
    }
}
