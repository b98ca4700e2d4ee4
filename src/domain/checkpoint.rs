//! Signed checkpoints of the Merkle tree: the C2SP `tlog-checkpoint` text, signed
//! as a C2SP `signed-note` with Ed25519, so that Go's `golang.org/x/mod/sumdb/note`
//! and any signed-note library verify it unchanged. The text and the note come
//! from `tlog_tiles` and `signed_note`; this module holds the key.

use base64::prelude::{Engine, BASE64_STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::SigningKey;
use signed_note::{Note, StandardSigner};
use tlog_tiles::{Checkpoint, Hash};

/// The algorithm byte of an Ed25519 note key.
const ALG_ED25519: u8 = 1;

/// Why a checkpoint key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a key file sms-audit wrote.
    #[error("the signing key is not a note private key (PRIVATE+KEY+name+id+key)")]
    Format,
    /// The origin is not one a signed note may name.
    #[error("the log origin {0:?} cannot name a note key (no spaces or +, not empty)")]
    Origin(String),
    /// The signing library refused the key.
    #[error("signing failed: {0}")]
    Signing(String),
}

/// The log's Ed25519 key, under the log's origin (the note's key name).
pub struct CheckpointKey {
    origin: String,
    seed: [u8; 32],
    signer: StandardSigner,
}

impl CheckpointKey {
    /// A new random key.
    pub fn generate(origin: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source");
        Self::from_seed(origin, seed)
    }

    fn from_seed(origin: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(KeyError::Origin(origin.to_string()));
        }
        let public = SigningKey::from_bytes(&seed).verifying_key();
        let encoded_public = [&[ALG_ED25519][..], public.as_bytes()].concat();
        let skey = format!(
            "PRIVATE+KEY+{origin}+{:08x}+{}",
            signed_note::key_id(origin, &encoded_public),
            BASE64_STANDARD.encode([&[ALG_ED25519][..], &seed[..]].concat())
        );
        let signer = StandardSigner::new(&skey).map_err(|_| KeyError::Format)?;
        Ok(Self {
            origin: origin.to_string(),
            seed,
            signer,
        })
    }

    /// From a note private key (`PRIVATE+KEY+<name>+<id>+<base64>`, as Go's
    /// `note.GenerateKey` writes it); the key signs under `origin` whatever name
    /// the file has.
    pub fn parse(text: &str, origin: &str) -> Result<Self, KeyError> {
        // The key (base64) may itself hold `+`: it is everything after the fourth.
        let fields: Vec<&str> = text.trim().splitn(5, '+').collect();
        let encoded = match fields.as_slice() {
            ["PRIVATE", "KEY", _name, _id, key] => *key,
            _ => return Err(KeyError::Format),
        };
        let bytes = BASE64_STANDARD
            .decode(encoded)
            .map_err(|_| KeyError::Format)?;
        match bytes.split_first() {
            Some((&ALG_ED25519, seed)) if seed.len() == 32 => {
                Self::from_seed(origin, seed.try_into().expect("32 bytes"))
            }
            _ => Err(KeyError::Format),
        }
    }

    /// The note private key, for the key file.
    pub fn to_private_text(&self) -> String {
        let public = SigningKey::from_bytes(&self.seed).verifying_key();
        let encoded_public = [&[ALG_ED25519][..], public.as_bytes()].concat();
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}\n",
            self.origin,
            signed_note::key_id(&self.origin, &encoded_public),
            BASE64_STANDARD.encode([&[ALG_ED25519][..], &self.seed[..]].concat())
        )
    }

    /// The verifier key: `<origin>+<key id, 8 hex digits>+<base64(0x01 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        signed_note::new_ed25519_verifier_key(
            &self.origin,
            &SigningKey::from_bytes(&self.seed).verifying_key(),
        )
    }

    /// The log's name, line 1 of every checkpoint.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The signed checkpoint of the tree of `size` leaves with `root`, made at `time`.
    pub fn sign(&self, size: u64, root: Hash, time: DateTime<Utc>) -> Result<String, KeyError> {
        self.sign_with(size, root, time, &[])
    }

    /// As [`sign`](Self::sign), with more extension lines after `time` (each one
    /// line, not empty; control characters are dropped).
    pub fn sign_with(
        &self,
        size: u64,
        root: Hash,
        time: DateTime<Utc>,
        extra: &[String],
    ) -> Result<String, KeyError> {
        let mut extension = format!("time {}\n", time.to_rfc3339_opts(SecondsFormat::Secs, true));
        for line in extra {
            let line: String = line.chars().filter(|c| !c.is_control()).collect();
            if !line.trim().is_empty() {
                extension.push_str(line.trim());
                extension.push('\n');
            }
        }
        let checkpoint = Checkpoint::new(&self.origin, size, root, &extension)
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        let mut note =
            Note::new(&checkpoint.to_bytes(), &[]).map_err(|e| KeyError::Signing(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| KeyError::Signing(e.to_string()))
    }
}

impl CheckpointKey {
    /// `text` (lines ending in newlines) as a signed note of this key: how other
    /// evidence (a reconciliation's summary) is signed by the log.
    pub fn sign_note(&self, text: &str) -> Result<String, KeyError> {
        let mut note =
            Note::new(text.as_bytes(), &[]).map_err(|e| KeyError::Signing(e.to_string()))?;
        note.add_sigs(&[&self.signer])
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        String::from_utf8(note.to_bytes()).map_err(|e| KeyError::Signing(e.to_string()))
    }
}

/// A verifier key as a flag takes it (`--vkey`): checked when the command line
/// is read, so that a malformed key is a usage error, never a "broken" verdict.
pub fn parse_verifier_key(text: &str) -> Result<String, String> {
    signed_note::StandardVerifier::new(text)
        .map(|_| text.to_string())
        .map_err(|e| {
            format!(
                "not a verifier key ({e}): expected NAME+KEYID+BASE64, as `/api/v1/checkpoints` gives it"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::{StandardVerifier, VerifierList};

    #[test]
    fn a_signed_checkpoint_verifies_with_the_verifier_key_only() {
        let key = CheckpointKey::generate("sms-audit/test-host").unwrap();
        let root = tlog_tiles::record_hash(b"leaf");
        let time = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z")
            .unwrap()
            .to_utc();
        let note = key.sign(7, root, time).unwrap();
        let lines: Vec<&str> = note.split('\n').collect();
        assert_eq!(lines[0], "sms-audit/test-host");
        assert_eq!(lines[1], "7");
        assert_eq!(lines[2], root.to_string());
        assert_eq!(lines[3], "time 2026-11-29T10:00:00Z");
        assert_eq!(lines[4], "");
        assert!(
            lines[5].starts_with("\u{2014} sms-audit/test-host "),
            "{note}"
        );

        let verifier = StandardVerifier::new(&key.verifier_key()).unwrap();
        let verified = Note::from_bytes(note.as_bytes())
            .unwrap()
            .verify(&VerifierList::new(vec![Box::new(verifier)]));
        assert!(verified.is_ok());

        let other = CheckpointKey::generate("sms-audit/test-host").unwrap();
        let stranger = StandardVerifier::new(&other.verifier_key()).unwrap();
        assert!(Note::from_bytes(note.as_bytes())
            .unwrap()
            .verify(&VerifierList::new(vec![Box::new(stranger)]))
            .is_err());
    }

    #[test]
    fn the_key_file_round_trips_and_follows_the_origin() {
        let key = CheckpointKey::generate("a.example/log").unwrap();
        let again = CheckpointKey::parse(&key.to_private_text(), "a.example/log").unwrap();
        assert_eq!(again.verifier_key(), key.verifier_key());
        let renamed = CheckpointKey::parse(&key.to_private_text(), "b.example/log").unwrap();
        assert!(renamed.verifier_key().starts_with("b.example/log+"));
        assert!(CheckpointKey::parse("not a key", "a").is_err());
        assert!(CheckpointKey::generate("has space").is_err());
    }
}
