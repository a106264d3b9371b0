//! BLS12-381 over `blst`, min-pubkey variant, Ethereum's proof-of-possession ciphersuite.
//!
//! Owns key generation from seed material, signing, single verification, proofs of possession,
//! aggregation, `fast_aggregate_verify` (one pairing check for many signers of one message) and
//! randomized batch verification of distinct messages. All checks run on the calling thread
//! through `blst::Pairing`, so the crate stays free of threads; callers that want parallelism
//! run these functions on their own workers. Public keys handed to `fast_aggregate_verify` must
//! come from a validated key table (`operators::KeyTable`): same-message aggregation is only
//! safe against rogue keys because every admitted key proved possession.

use blst::BLST_ERROR;
use blst::MultiPoint;
use blst::min_pk;
use blst::{Pairing, blst_p1_affine, blst_p2_affine};
use sha2::{Digest, Sha256};

use crate::error::ConsensusError;
use crate::types::{OperatorIndex, Root};

/// Signature DST (hash-to-G2) of Ethereum's POP ciphersuite.
pub const DST_SIG: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
/// Proof-of-possession DST.
pub const DST_POP: &[u8] = b"BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

/// A BLS secret key. `Debug` never prints the key.
#[derive(Clone)]
pub struct SecretKey(min_pk::SecretKey);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// Derive a key from seed material (IETF KeyGen, `ikm` at least 32 bytes).
    pub fn from_seed(ikm: &[u8]) -> Result<Self, ConsensusError> {
        min_pk::SecretKey::key_gen(ikm, &[]).map(Self).map_err(|_| ConsensusError::BadKeyMaterial)
    }

    /// A secret key from its 32-byte big-endian scalar (as EIP-2335 keystores hold it); zero
    /// and values not below the group order are refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsensusError> {
        min_pk::SecretKey::from_bytes(bytes).map(Self).map_err(|_| ConsensusError::BadKeyMaterial)
    }

    /// The 32-byte big-endian scalar, for writing into a keystore.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.sk_to_pk())
    }

    /// Sign a 32-byte signing root.
    pub fn sign(&self, signing_root: &Root) -> Signature {
        Signature(self.0.sign(signing_root, DST_SIG, &[]))
    }

    /// Proof of possession: the key signs its own compressed public key under the POP DST.
    pub fn proof_of_possession(&self) -> Signature {
        let pk = self.public_key().to_bytes();
        Signature(self.0.sign(&pk, DST_POP, &[]))
    }
}

/// A decompressed public key. Keys from `PublicKey::from_bytes` are subgroup-checked and
/// never the point at infinity.
#[derive(Clone, Copy, Debug)]
pub struct PublicKey(min_pk::PublicKey);

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}
impl Eq for PublicKey {}

impl PublicKey {
    /// Decompress and validate (on curve, in the subgroup, not infinity).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsensusError> {
        min_pk::PublicKey::key_validate(bytes)
            .map(Self)
            .map_err(|e| ConsensusError::BadPublicKeyEncoding(format!("{e:?}")))
    }
    pub fn to_bytes(&self) -> [u8; 48] {
        self.0.compress()
    }

    /// The point as EIP-2537 encodes a G1 point (what the settlement contract takes): x and y,
    /// each a 64-byte big-endian field element (16 zero bytes, then 48).
    pub fn to_eip2537(&self) -> [u8; 128] {
        let raw = self.0.serialize(); // x ‖ y, 48 bytes each
        let mut out = [0u8; 128];
        for (limb, chunk) in out.chunks_exact_mut(64).zip(raw.chunks_exact(48)) {
            if let Some(tail) = limb.get_mut(16..) {
                tail.copy_from_slice(chunk);
            }
        }
        out
    }

    /// `-self`: the compressed encoding with the sign of y flipped. No subgroup check is
    /// needed: the negation of a point of the subgroup is one.
    pub fn negate(&self) -> Option<PublicKey> {
        let mut bytes = self.0.compress();
        if let Some(flags) = bytes.first_mut() {
            *flags ^= 0x20;
        }
        min_pk::PublicKey::uncompress(&bytes).ok().map(PublicKey)
    }
}

/// A decompressed signature (on the curve; the subgroup check happens in verification).
#[derive(Clone, Copy, Debug)]
pub struct Signature(min_pk::Signature);

impl PartialEq for Signature {
    fn eq(&self, other: &Self) -> bool {
        self.to_bytes() == other.to_bytes()
    }
}
impl Eq for Signature {}

impl Signature {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConsensusError> {
        min_pk::Signature::from_bytes(bytes)
            .map(Self)
            .map_err(|_| ConsensusError::BadSignatureEncoding)
    }
    pub fn to_bytes(&self) -> [u8; 96] {
        self.0.compress()
    }

    /// The point as EIP-2537 encodes a G2 point: `x.c0 ‖ x.c1 ‖ y.c0 ‖ y.c1`, each a 64-byte
    /// big-endian field element. (blst's uncompressed form orders each coordinate's `c1` first,
    /// as the ZCash encoding does.)
    pub fn to_eip2537(&self) -> [u8; 256] {
        let raw = self.0.serialize(); // x.c1 ‖ x.c0 ‖ y.c1 ‖ y.c0, 48 bytes each
        let parts: Vec<&[u8]> = raw.chunks_exact(48).collect();
        let mut out = [0u8; 256];
        for (limb, source) in out.chunks_exact_mut(64).zip([1usize, 0, 3, 2]) {
            if let (Some(tail), Some(chunk)) = (limb.get_mut(16..), parts.get(source)) {
                tail.copy_from_slice(chunk);
            }
        }
        out
    }
}

/// One pairing term: key, message, signature, optional 64-bit batch scalar.
type Term<'a> = (&'a PublicKey, &'a [u8], &'a Signature, Option<[u8; 8]>);

fn pairing_check(items: &[Term<'_>], dst: &[u8]) -> bool {
    if items.is_empty() {
        return false;
    }
    let mut pairing = Pairing::new(true, dst);
    for (pk, msg, sig, scalar) in items {
        let pk_aff: &blst_p1_affine = (&pk.0).into();
        let sig_aff: &blst_p2_affine = (&sig.0).into();
        let err = match scalar {
            // 64-bit random scalars: a forged batch passes with probability about 2^-64.
            Some(s) => pairing.mul_n_aggregate(pk_aff, false, sig_aff, true, s, 64, msg, &[]),
            None => pairing.aggregate(pk_aff, false, sig_aff, true, msg, &[]),
        };
        if err != BLST_ERROR::BLST_SUCCESS {
            return false;
        }
    }
    pairing.commit();
    pairing.finalverify(None)
}

/// Verify one signature over `msg` (a signing root). The key must be a validated key.
pub fn verify(pk: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    pairing_check(&[(pk, msg, sig, None)], DST_SIG)
}

/// Check a proof of possession and return the validated key. A key whose PoP fails is refused.
pub fn verify_pop(
    index: OperatorIndex,
    pubkey: &[u8],
    pop: &[u8],
) -> Result<PublicKey, ConsensusError> {
    let pk = PublicKey::from_bytes(pubkey)
        .map_err(|e| ConsensusError::BadPublicKey { index, reason: e.to_string() })?;
    let sig =
        Signature::from_bytes(pop).map_err(|_| ConsensusError::BadProofOfPossession { index })?;
    if pairing_check(&[(&pk, pubkey, &sig, None)], DST_POP) {
        Ok(pk)
    } else {
        Err(ConsensusError::BadProofOfPossession { index })
    }
}

/// Aggregate signatures (point addition; order does not matter). `None` for an empty input.
pub fn aggregate_signatures(sigs: &[Signature]) -> Option<Signature> {
    let refs: Vec<&min_pk::Signature> = sigs.iter().map(|s| &s.0).collect();
    min_pk::AggregateSignature::aggregate(&refs, false).ok().map(|a| Signature(a.to_signature()))
}

/// Aggregate public keys. The keys must be validated (PoP-checked) table keys.
/// Added as one batch, like [`add_public_keys`].
pub fn aggregate_public_keys(pks: &[&PublicKey]) -> Option<PublicKey> {
    let (first, rest) = pks.split_first()?;
    add_public_keys(first, rest)
}

/// `base` plus each of `more` (validated table keys or their negations). `None` if the sum is
/// the point at infinity. No subgroup check: a sum of subgroup points is one. The points are
/// added as one batch (blst's `blst_p1s_add`: affine additions sharing one inversion), about
/// three times faster than adding them one by one.
pub fn add_public_keys(base: &PublicKey, more: &[&PublicKey]) -> Option<PublicKey> {
    if more.is_empty() {
        return Some(*base);
    }
    let points: Vec<min_pk::PublicKey> =
        std::iter::once(base.0).chain(more.iter().map(|pk| pk.0)).collect();
    let sum = PublicKey(points.as_slice().add().to_public_key());
    // The compressed form flags infinity in bit 6 of its first byte.
    (sum.to_bytes().first().is_some_and(|flags| flags & 0x40 == 0)).then_some(sum)
}

/// One pairing check of `sig` over `msg` against an already aggregated key, on blst's own
/// path (the signature's subgroup check runs beside the Miller loop on blst's threads). Sound
/// for the same reason as [`fast_aggregate_verify`].
pub fn verify_aggregated(aggregate: &PublicKey, msg: &[u8], sig: &Signature) -> bool {
    sig.0.fast_aggregate_verify_pre_aggregated(true, msg, DST_SIG, &aggregate.0)
        == BLST_ERROR::BLST_SUCCESS
}

/// Same message, many signers: aggregate the keys, then one pairing check. Sound only because
/// every key passed a proof of possession when its key table was built.
pub fn fast_aggregate_verify(pks: &[&PublicKey], msg: &[u8], sig: &Signature) -> bool {
    match aggregate_public_keys(pks) {
        Some(agg) => verify(&agg, msg, sig),
        None => false,
    }
}

/// Verify many signatures over distinct (or equal) messages with one multi-pairing, each term
/// weighted by a 64-bit scalar derived from `seed` (which the caller supplies: this crate
/// never draws randomness itself). Returns false if any signature is invalid (with
/// overwhelming probability) or the batch is empty. On false, callers that need to know
/// which item failed fall back to `verify` per item.
pub fn batch_verify(items: &[(PublicKey, Root, Signature)], seed: &[u8; 32]) -> bool {
    let mut terms = Vec::with_capacity(items.len());
    for (i, (pk, msg, sig)) in items.iter().enumerate() {
        let digest =
            Sha256::new().chain_update(seed).chain_update((i as u64).to_le_bytes()).finalize();
        let mut scalar = [0u8; 8];
        for (dst, src) in scalar.iter_mut().zip(digest.iter()) {
            *dst = *src;
        }
        if scalar == [0u8; 8] {
            // A zero scalar would drop the term from the check.
            scalar = [1, 0, 0, 0, 0, 0, 0, 0];
        }
        terms.push((pk, msg.as_slice(), sig, Some(scalar)));
    }
    pairing_check(&terms, DST_SIG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> SecretKey {
        SecretKey::from_seed(&[i; 32]).unwrap()
    }

    #[test]
    fn sign_verify_and_wrong_message() {
        let sk = key(1);
        let pk = sk.public_key();
        let sig = sk.sign(&[5; 32]);
        assert!(verify(&pk, &[5; 32], &sig));
        assert!(!verify(&pk, &[6; 32], &sig));
        assert!(!verify(&key(2).public_key(), &[5; 32], &sig));
        let back = Signature::from_bytes(&sig.to_bytes()).unwrap();
        assert!(verify(&pk, &[5; 32], &back));
    }

    #[test]
    fn short_seed_refused() {
        assert_eq!(SecretKey::from_seed(&[1; 31]).unwrap_err(), ConsensusError::BadKeyMaterial);
    }

    #[test]
    fn pop_accepts_own_and_refuses_other() {
        let a = key(1);
        let b = key(2);
        let pk = a.public_key().to_bytes();
        assert!(verify_pop(OperatorIndex::ZERO, &pk, &a.proof_of_possession().to_bytes()).is_ok());
        assert!(verify_pop(OperatorIndex::ZERO, &pk, &b.proof_of_possession().to_bytes()).is_err());
        // A signature under the message DST is not a PoP (domain separation).
        let wrong_dst = Signature(a.0.sign(&pk, DST_SIG, &[]));
        assert!(verify_pop(OperatorIndex::ZERO, &pk, &wrong_dst.to_bytes()).is_err());
        // Infinity / garbage keys are refused.
        let mut inf = [0u8; 48];
        inf[0] = 0xc0;
        assert!(
            verify_pop(OperatorIndex::ZERO, &inf, &a.proof_of_possession().to_bytes()).is_err()
        );
        assert!(
            verify_pop(OperatorIndex::ZERO, &[1u8; 48], &a.proof_of_possession().to_bytes())
                .is_err()
        );
    }

    #[test]
    fn fast_aggregate() {
        let keys: Vec<SecretKey> = (1..=5).map(key).collect();
        let pks: Vec<PublicKey> = keys.iter().map(|k| k.public_key()).collect();
        let msg = [9u8; 32];
        let sigs: Vec<Signature> = keys.iter().map(|k| k.sign(&msg)).collect();
        let agg = aggregate_signatures(&sigs).unwrap();
        let refs: Vec<&PublicKey> = pks.iter().collect();
        assert!(fast_aggregate_verify(&refs, &msg, &agg));
        assert!(!fast_aggregate_verify(&refs[..4], &msg, &agg));
        assert!(!fast_aggregate_verify(&refs, &[8u8; 32], &agg));
        assert!(!fast_aggregate_verify(&[], &msg, &agg));
        assert!(aggregate_signatures(&[]).is_none());
    }

    #[test]
    fn batch_distinct_messages() {
        let items: Vec<(PublicKey, Root, Signature)> = (1..=4u8)
            .map(|i| {
                let sk = key(i);
                (sk.public_key(), [i; 32], sk.sign(&[i; 32]))
            })
            .collect();
        assert!(batch_verify(&items, &[7; 32]));
        let mut bad = items.clone();
        bad[2].1 = [99; 32];
        assert!(!batch_verify(&bad, &[7; 32]));
        // Swapping two signatures keeps the sum but must still fail thanks to the scalars.
        let mut swapped = items.clone();
        let s0 = swapped[0].2;
        swapped[0].2 = swapped[1].2;
        swapped[1].2 = s0;
        assert!(!batch_verify(&swapped, &[7; 32]));
        assert!(!batch_verify(&[], &[7; 32]));
    }
}
