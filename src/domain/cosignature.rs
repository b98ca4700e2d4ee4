//! C2SP `tlog-cosignature` v1 with Ed25519: a witness's timestamped signature
//! on a checkpoint, as a `signed-note` signature line. The key ID is
//! the first 4 bytes of SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key); the signature is the 8-byte
//! big-endian timestamp followed by the Ed25519 signature of
//! `cosignature/v1\ntime <timestamp>\n` and the checkpoint's note text.
//! Implemented as `signed_note`'s `Signer` and `Verifier`, so notes carry
//! cosignatures beside the log's own signature.

use base64::prelude::{Engine, BASE64_STANDARD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};

/// The signature type byte of an Ed25519 `cosignature/v1` key.
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Why a witness key or verifier key could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CosignatureKeyError {
    /// Not `name+id+base64(0x04 ‖ key)`.
    #[error("not a cosignature/v1 verifier key: expected NAME+KEYID+BASE64 of type 0x04 (Ed25519 cosignature)")]
    VerifierFormat,
    /// The key ID does not belong to the name and key.
    #[error("the verifier key's ID does not match its name and key")]
    VerifierId,
    /// Not `PRIVATE+KEY+name+id+base64(0x04 ‖ seed)`.
    #[error("not a witness key file (PRIVATE+KEY+name+id+key of type 0x04)")]
    PrivateFormat,
    /// A name a signed note cannot carry.
    #[error("the witness name {0:?} cannot name a note key (no spaces or +, not empty)")]
    Name(String),
}

fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    signed_note::key_id(
        name,
        &[&[ALG_COSIGNATURE_V1][..], public.as_bytes()].concat(),
    )
}

/// The message a `cosignature/v1` signs: header, timestamp, the note's text.
fn signed_message(timestamp: u64, note_text: &[u8]) -> Vec<u8> {
    let mut message = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    message.extend_from_slice(note_text);
    message
}

/// A witness's Ed25519 key under its name.
pub struct WitnessKey {
    name: String,
    key: SigningKey,
}

impl WitnessKey {
    /// A new random key.
    pub fn generate(name: &str) -> Result<Self, CosignatureKeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the OS random source");
        Self::from_seed(name, seed)
    }

    fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, CosignatureKeyError> {
        if !signed_note::is_key_name_valid(name) {
            return Err(CosignatureKeyError::Name(name.to_string()));
        }
        Ok(Self {
            name: name.to_string(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// From its key file: `PRIVATE+KEY+<name>+<id>+<base64(0x04 ‖ seed)>`.
    pub fn parse(text: &str) -> Result<Self, CosignatureKeyError> {
        let fields: Vec<&str> = text.trim().splitn(5, '+').collect();
        let ["PRIVATE", "KEY", name, id, encoded] = fields.as_slice() else {
            return Err(CosignatureKeyError::PrivateFormat);
        };
        let bytes = BASE64_STANDARD
            .decode(encoded)
            .map_err(|_| CosignatureKeyError::PrivateFormat)?;
        let seed: [u8; 32] = match bytes.split_first() {
            Some((&ALG_COSIGNATURE_V1, seed)) => seed
                .try_into()
                .map_err(|_| CosignatureKeyError::PrivateFormat)?,
            _ => return Err(CosignatureKeyError::PrivateFormat),
        };
        let key = Self::from_seed(name, seed)?;
        if *id != format!("{:08x}", key.key_id()) {
            return Err(CosignatureKeyError::PrivateFormat);
        }
        Ok(key)
    }

    /// The key file's text.
    pub fn to_private_text(&self) -> String {
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}\n",
            self.name,
            self.key_id(),
            BASE64_STANDARD.encode([&[ALG_COSIGNATURE_V1][..], self.key.as_bytes()].concat())
        )
    }

    /// The witness's name, the cosignature lines' key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        key_id(&self.name, &self.key.verifying_key())
    }

    /// The verifier key logs and auditors configure:
    /// `<name>+<key id>+<base64(0x04 ‖ public key)>`.
    pub fn verifier_key(&self) -> String {
        let public = self.key.verifying_key();
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id(),
            BASE64_STANDARD.encode([&[ALG_COSIGNATURE_V1][..], public.as_bytes()].concat())
        )
    }

    /// A signer that cosigns as of `timestamp` (POSIX seconds).
    pub fn signer(&self, timestamp: u64) -> Cosigner<'_> {
        Cosigner {
            key: self,
            timestamp,
        }
    }
}

/// [`WitnessKey`] signing at one moment, for `Note::add_sigs`.
pub struct Cosigner<'a> {
    key: &'a WitnessKey,
    timestamp: u64,
}

impl signed_note::Signer for Cosigner<'_> {
    fn name(&self) -> &str {
        &self.key.name
    }

    fn key_id(&self) -> u32 {
        self.key.key_id()
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, ed25519_dalek::SignatureError> {
        let signature = self.key.key.sign(&signed_message(self.timestamp, msg));
        Ok([&self.timestamp.to_be_bytes()[..], &signature.to_bytes()[..]].concat())
    }
}

/// Checks a witness's `cosignature/v1` lines: its name, key ID and public key.
#[derive(Clone, Debug)]
pub struct CosignatureVerifier {
    name: String,
    id: u32,
    key: VerifyingKey,
    vkey: String,
}

impl CosignatureVerifier {
    /// From a verifier key `<name>+<key id>+<base64(0x04 ‖ public key)>`.
    pub fn new(vkey: &str) -> Result<Self, CosignatureKeyError> {
        let fields: Vec<&str> = vkey.trim().splitn(3, '+').collect();
        let [name, id, encoded] = fields.as_slice() else {
            return Err(CosignatureKeyError::VerifierFormat);
        };
        if !signed_note::is_key_name_valid(name) || id.len() != 8 {
            return Err(CosignatureKeyError::VerifierFormat);
        }
        let id = u32::from_str_radix(id, 16).map_err(|_| CosignatureKeyError::VerifierFormat)?;
        let bytes = BASE64_STANDARD
            .decode(encoded)
            .map_err(|_| CosignatureKeyError::VerifierFormat)?;
        let key = match bytes.split_first() {
            Some((&ALG_COSIGNATURE_V1, key)) => key
                .try_into()
                .ok()
                .and_then(|k: [u8; 32]| VerifyingKey::from_bytes(&k).ok())
                .ok_or(CosignatureKeyError::VerifierFormat)?,
            _ => return Err(CosignatureKeyError::VerifierFormat),
        };
        if key_id(name, &key) != id {
            return Err(CosignatureKeyError::VerifierId);
        }
        Ok(Self {
            name: name.to_string(),
            id,
            key,
            vkey: vkey.trim().to_string(),
        })
    }

    /// The verifier key it was made from.
    pub fn vkey(&self) -> &str {
        &self.vkey
    }

    /// The timestamp a cosignature of this key carries (its first 8 bytes).
    pub fn timestamp(signature: &[u8]) -> Option<u64> {
        (signature.len() == 72).then(|| u64::from_be_bytes(signature[..8].try_into().unwrap()))
    }
}

impl signed_note::Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Some(timestamp) = Self::timestamp(sig) else {
            return false;
        };
        // A timestamp above 2^63 - 1 is not a cosignature (the spec's bound).
        if timestamp > i64::MAX as u64 {
            return false;
        }
        let signature = Signature::from_bytes(sig[8..].try_into().expect("64 bytes"));
        self.key
            .verify(&signed_message(timestamp, msg), &signature)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signed_note::{Note, Verifier as _, VerifierList};

    const CHECKPOINT: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn a_cosignature_verifies_with_the_witness_key_only_and_carries_its_time() {
        let witness = WitnessKey::generate("witness.example/w1").unwrap();
        let mut note = Note::new(CHECKPOINT.as_bytes(), &[]).unwrap();
        note.add_sigs(&[&witness.signer(1_679_315_147)]).unwrap();
        let text = String::from_utf8(note.to_bytes()).unwrap();
        let line = text.lines().last().unwrap();
        assert!(line.starts_with("\u{2014} witness.example/w1 "), "{line}");
        let blob = BASE64_STANDARD
            .decode(line.rsplit(' ').next().unwrap())
            .unwrap();
        assert_eq!(blob.len(), 4 + 8 + 64, "key id, timestamp, signature");
        assert_eq!(&blob[4..12], &1_679_315_147u64.to_be_bytes());

        let verifier = CosignatureVerifier::new(&witness.verifier_key()).unwrap();
        let parsed = Note::from_bytes(text.as_bytes()).unwrap();
        let (verified, _) = parsed
            .verify(&VerifierList::new(vec![Box::new(verifier.clone())]))
            .unwrap();
        assert_eq!(verified.len(), 1);
        assert_eq!(
            CosignatureVerifier::timestamp(verified[0].signature()),
            Some(1_679_315_147)
        );
        // The signed message is the header, the time and the text.
        let mut changed = blob[4..].to_vec();
        changed[7] ^= 1;
        assert!(
            !verifier.verify(CHECKPOINT.as_bytes(), &changed),
            "another time"
        );
        assert!(!verifier.verify(b"other\n", &blob[4..]), "another text");

        let stranger = WitnessKey::generate("witness.example/w1").unwrap();
        let wrong = CosignatureVerifier::new(&stranger.verifier_key()).unwrap();
        assert!(Note::from_bytes(text.as_bytes())
            .unwrap()
            .verify(&VerifierList::new(vec![Box::new(wrong)]))
            .is_err());
    }

    #[test]
    fn keys_round_trip_and_bad_ones_are_refused() {
        let witness = WitnessKey::generate("auditor.example/witness").unwrap();
        let again = WitnessKey::parse(&witness.to_private_text()).unwrap();
        assert_eq!(again.verifier_key(), witness.verifier_key());
        assert!(witness
            .verifier_key()
            .starts_with("auditor.example/witness+"));
        assert_eq!(
            WitnessKey::generate("has space").err(),
            Some(CosignatureKeyError::Name("has space".into()))
        );
        // A log's Ed25519 note key (type 0x01) is not a cosignature key.
        let log_vkey = crate::domain::checkpoint::CheckpointKey::generate("log.example")
            .unwrap()
            .verifier_key();
        assert_eq!(
            CosignatureVerifier::new(&log_vkey).err(),
            Some(CosignatureKeyError::VerifierFormat)
        );
        let vkey = witness.verifier_key();
        let (name, rest) = vkey.split_once('+').unwrap();
        let renamed = format!("{name}x+{rest}");
        assert_eq!(
            CosignatureVerifier::new(&renamed).err(),
            Some(CosignatureKeyError::VerifierId)
        );
        assert!(WitnessKey::parse("PRIVATE+KEY+a+00000000+AAAA").is_err());
    }
}
