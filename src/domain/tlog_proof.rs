//! C2SP `tlog-proof@v1`: an entry's index, its inclusion proof and the
//! (cosigned) checkpoint it is proven against, in one text an auditor keeps.
//! sms-audit puts the upload's entry hash in the `extra` line: the leaf is
//! SHA-256(0x00 ‖ entry hash), and the entry hash ties it to the raw body.

use base64::prelude::{Engine, BASE64_STANDARD};
use tlog_tiles::Hash;

/// The first line of every proof.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed proof.
#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    /// Opaque extra data (sms-audit: the entry hash's 32 bytes).
    pub extra: Option<Vec<u8>>,
    /// The entry's zero-based index in the log.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The checkpoint, verbatim (a signed note, with any cosignatures).
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof's text.
    pub fn to_text(&self) -> String {
        let mut text = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            text.push_str(&format!("extra {}\n", BASE64_STANDARD.encode(extra)));
        }
        text.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            text.push_str(&format!("{hash}\n"));
        }
        text.push('\n');
        text.push_str(&self.checkpoint);
        text
    }

    /// Reads a proof.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or("not a tlog-proof: no empty line before the checkpoint")?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(format!("not a tlog-proof: the first line is not {HEADER}"));
        }
        let mut line = lines.next().ok_or("no index line")?;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix("extra ") {
            extra = Some(
                BASE64_STANDARD
                    .decode(encoded)
                    .map_err(|_| "the extra line is not base64")?,
            );
            line = lines.next().ok_or("no index line")?;
        }
        let index = line
            .strip_prefix("index ")
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse().ok())
            .ok_or("the index line must be `index N` (no leading zeroes)")?;
        let proof = lines
            .map(|l| {
                BASE64_STANDARD
                    .decode(l)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .map(Hash)
                    .ok_or_else(|| format!("a proof line is not a base64 SHA-256 hash: {l:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_round_trips_and_bad_ones_are_named() {
        let proof = TlogProof {
            extra: Some(vec![7; 32]),
            index: 41,
            proof: vec![tlog_tiles::record_hash(b"a"), tlog_tiles::record_hash(b"b")],
            checkpoint: "log.example\n42\nAAAA\n\n\u{2014} log.example sig\n".into(),
        };
        let text = proof.to_text();
        assert!(
            text.starts_with("c2sp.org/tlog-proof@v1\nextra BwcH"),
            "{text}"
        );
        assert_eq!(TlogProof::parse(&text), Ok(proof));
        let bare = TlogProof::parse("c2sp.org/tlog-proof@v1\nindex 0\n\ncheckpoint").unwrap();
        assert_eq!((bare.extra, bare.index, bare.proof.len()), (None, 0, 0));
        for bad in [
            "c2sp.org/tlog-proof@v2\nindex 0\n\nx",
            "c2sp.org/tlog-proof@v1\nindex 01\n\nx",
            "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\nx",
            "c2sp.org/tlog-proof@v1\nindex 0\nnot a hash\n\nx",
            "c2sp.org/tlog-proof@v1\nindex 0",
        ] {
            assert!(TlogProof::parse(bad).is_err(), "{bad:?}");
        }
    }
}
