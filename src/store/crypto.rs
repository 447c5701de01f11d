//! Encryption at rest and crypto-shredding.
//!
//! - Personal fields of a record (user, IP, changes, details) are sealed with
//!   a key of their own *subject* (the user) whenever a record names a user.
//!   The subject key lives in [`Space::SubjectKeys`] under the user's
//!   pseudonym; erasure deletes it, which leaves those fields unreadable
//!   everywhere (records, backups of records) while the ciphertext, and so
//!   the audit chain's hashes, stay exactly as they were.
//! - The pseudonym is HMAC-SHA256(store secret, user id): indexes and
//!   queries by user use it, so no user id is stored in clear.
//! - With `audit.encryption_key`, whole record payloads are sealed with the
//!   master key too, and subject keys are wrapped by it.
//!
//! AEAD: ChaCha20-Poly1305 (ring), random 96-bit nonces.

use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::{Op, Space, Store, StoreError};

pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const META_SECRET: &[u8] = b"pseudonym_secret";

pub struct Keyring {
    master: Option<LessSafeKey>,
    pseudonym: hmac::Key,
    rng: SystemRandom,
}

/// A subject's key (or its absence after erasure).
pub struct SubjectKey(LessSafeKey);

pub fn random_bytes<const N: usize>() -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| StoreError::Other("system random generator failed".into()))?;
    Ok(b)
}

fn aead_key(bytes: &[u8]) -> Result<LessSafeKey, StoreError> {
    UnboundKey::new(&CHACHA20_POLY1305, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| StoreError::Other("bad key length".into()))
}

/// The master key from secret material: 64 hex digits are the key itself;
/// anything else of at least 32 bytes is hashed to one (SHA-256).
pub fn master_key_from(material: &str) -> Result<[u8; KEY_LEN], String> {
    let m = material.trim();
    if m.len() == 64 && m.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut k = [0u8; KEY_LEN];
        for (i, chunk) in m.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).map_err(|e| e.to_string())?;
            k[i] = u8::from_str_radix(s, 16).map_err(|e| e.to_string())?;
        }
        return Ok(k);
    }
    if m.len() < 32 {
        return Err(format!(
            "an encryption key needs at least 32 bytes of secret material (got {}); e.g. `openssl rand -hex 32`",
            m.len()
        ));
    }
    let d = ring::digest::digest(&ring::digest::SHA256, m.as_bytes());
    let mut k = [0u8; KEY_LEN];
    k.copy_from_slice(d.as_ref());
    Ok(k)
}

impl Keyring {
    /// Loads (creating on first use) the store's pseudonym secret.
    pub fn load(store: &dyn Store, master: Option<[u8; KEY_LEN]>) -> Result<Keyring, StoreError> {
        let master = master.map(|k| aead_key(&k)).transpose()?;
        let mut ring = Keyring {
            master,
            pseudonym: hmac::Key::new(hmac::HMAC_SHA256, &[0u8; 32]),
            rng: SystemRandom::new(),
        };
        let secret = match store.get(Space::Meta, META_SECRET)? {
            Some(v) => ring.unwrap_key(&v)?,
            None => {
                let s: [u8; 32] = random_bytes()?;
                let stored = ring.wrap_key(&s)?;
                store.write(&[Op::Put(Space::Meta, META_SECRET.to_vec(), stored)], true)?;
                s.to_vec()
            }
        };
        ring.pseudonym = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        Ok(ring)
    }

    pub fn encrypts_payloads(&self) -> bool {
        self.master.is_some()
    }

    /// The stable pseudonym of a user id.
    pub fn pseudonym(&self, user: &str) -> [u8; 32] {
        let t = hmac::sign(&self.pseudonym, user.as_bytes());
        let mut p = [0u8; 32];
        p.copy_from_slice(t.as_ref());
        p
    }

    /// An index key under a text value (`term ‖ 0 ‖ tail`). With encryption
    /// at rest the term is its keyed hash, so index keys reveal no action,
    /// resource or event type; lookups hash the queried term the same way.
    pub fn index_term(&self, term: &str, tail: &[u8]) -> Vec<u8> {
        if self.master.is_some() {
            let t = hmac::sign(&self.pseudonym, format!("term:{term}").as_bytes());
            let mut k = hex(t.as_ref()).into_bytes();
            k.push(0);
            k.extend_from_slice(tail);
            k
        } else {
            super::keys::text_index(term, tail)
        }
    }

    fn wrap_key(&self, key: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.master {
            Some(m) => self.seal_with(m, key),
            None => Ok(key.to_vec()),
        }
    }

    fn unwrap_key(&self, stored: &[u8]) -> Result<Vec<u8>, StoreError> {
        match &self.master {
            Some(m) => open_with(m, stored).ok_or_else(|| {
                StoreError::Corrupt(
                    "a stored key does not open with audit.encryption_key (wrong key?)".into(),
                )
            }),
            None if stored.len() == KEY_LEN => Ok(stored.to_vec()),
            None => Err(StoreError::Corrupt(
                "the store's keys are wrapped: audit.encryption_key is needed to read it".into(),
            )),
        }
    }

    /// The subject key of `pseudonym`, if it exists (not erased).
    pub fn subject_key(
        &self,
        store: &dyn Store,
        pseudonym: &[u8; 32],
    ) -> Result<Option<SubjectKey>, StoreError> {
        match store.get(Space::SubjectKeys, pseudonym)? {
            Some(v) => Ok(Some(SubjectKey(aead_key(&self.unwrap_key(&v)?)?))),
            None => Ok(None),
        }
    }

    /// A new subject key and the op that stores it.
    pub fn new_subject_key(&self, pseudonym: &[u8; 32]) -> Result<(SubjectKey, Op), StoreError> {
        let k: [u8; KEY_LEN] = random_bytes()?;
        let op = Op::Put(Space::SubjectKeys, pseudonym.to_vec(), self.wrap_key(&k)?);
        Ok((SubjectKey(aead_key(&k)?), op))
    }

    pub fn seal_subject(&self, key: &SubjectKey, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.seal_with(&key.0, plain)
    }

    pub fn open_subject(key: &SubjectKey, sealed: &[u8]) -> Option<Vec<u8>> {
        open_with(&key.0, sealed)
    }

    /// Seals a whole payload with the master key (identity without one).
    pub fn seal_payload(&self, plain: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match &self.master {
            Some(m) => self.seal_with(m, &plain),
            None => Ok(plain),
        }
    }

    /// Opens a payload sealed by [`Keyring::seal_payload`].
    pub fn open_payload(&self, stored: &[u8], sealed: bool) -> Result<Vec<u8>, StoreError> {
        if !sealed {
            return Ok(stored.to_vec());
        }
        let m = self.master.as_ref().ok_or_else(|| {
            StoreError::Other("record is encrypted: audit.encryption_key is needed".into())
        })?;
        open_with(m, stored).ok_or_else(|| {
            StoreError::Corrupt("record does not decrypt (wrong key or altered)".into())
        })
    }

    fn seal_with(&self, key: &LessSafeKey, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Other("system random generator failed".into()))?;
        let mut buf = plain.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf)
            .map_err(|_| StoreError::Other("encryption failed".into()))?;
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }
}

fn open_with(key: &LessSafeKey, sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + aead::CHACHA20_POLY1305.tag_len() {
        return None;
    }
    let (n, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(n).ok()?;
    let mut buf = ct.to_vec();
    let plain = key.open_in_place(nonce, Aad::empty(), &mut buf).ok()?;
    Some(plain.to_vec())
}

pub fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(D[(x >> 4) as usize] as char);
        s.push(D[(x & 15) as usize] as char);
    }
    s
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Engine, open, tempdir};

    #[test]
    fn subject_keys_seal_and_shred() {
        let dir = tempdir::Dir::new("crypto");
        let s = open(dir.path(), Engine::Sled).unwrap();
        let ring = Keyring::load(&*s, None).unwrap();
        let p = ring.pseudonym("alice");
        assert_eq!(p, ring.pseudonym("alice"));
        assert_ne!(p, ring.pseudonym("bob"));
        let (k, op) = ring.new_subject_key(&p).unwrap();
        s.write(&[op], true).unwrap();
        let sealed = ring.seal_subject(&k, b"alice@example.com").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"alice"));
        let k2 = ring.subject_key(&*s, &p).unwrap().unwrap();
        assert_eq!(
            Keyring::open_subject(&k2, &sealed).unwrap(),
            b"alice@example.com"
        );
        // Erasure: the key goes, the ciphertext stays unreadable.
        s.write(&[Op::Delete(Space::SubjectKeys, p.to_vec())], true)
            .unwrap();
        assert!(ring.subject_key(&*s, &p).unwrap().is_none());
        // The pseudonym secret persists across loads.
        let again = Keyring::load(&*s, None).unwrap();
        assert_eq!(again.pseudonym("alice"), p);
    }

    #[test]
    fn master_key_wraps_and_is_required() {
        let dir = tempdir::Dir::new("crypto-master");
        let s = open(dir.path(), Engine::Redb).unwrap();
        let key = master_key_from(&"ab".repeat(32)).unwrap();
        let ring = Keyring::load(&*s, Some(key)).unwrap();
        let sealed = ring.seal_payload(b"{\"x\":1}".to_vec()).unwrap();
        assert_eq!(ring.open_payload(&sealed, true).unwrap(), b"{\"x\":1}");
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(
            ring.open_payload(&bad, true).is_err(),
            "tampering is detected"
        );
        assert!(
            Keyring::load(&*s, None).is_err(),
            "wrapped secrets need the key"
        );
        let wrong = master_key_from(&"cd".repeat(32)).unwrap();
        assert!(Keyring::load(&*s, Some(wrong)).is_err());
        assert!(master_key_from("short").is_err());
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(unhex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(unhex("0g"), None);
    }
}
