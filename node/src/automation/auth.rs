//! Wallet sign-in (docs/protocol.md, 7.5): a challenge text the owner signs under EIP-191, and
//! the HMAC token it is exchanged for. The signed text is also the owner's *session grant* to
//! the node it names: carried with each request the node replicates, it lets every operator
//! check that the owner authorized that node, until the session expires.

use std::collections::HashMap;
use std::fmt::Write as _;

use alloy::primitives::{Address, Signature};
use avs_proto::automation_v1 as pb;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// How long a challenge can be signed and exchanged.
pub const CHALLENGE_TTL_MS: u64 = 5 * 60 * 1000;
/// How long a token is valid.
pub const TOKEN_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// Open challenges a node holds at most (issued, neither exchanged nor expired).
pub const MAX_OPEN_CHALLENGES: usize = 4096;
/// Open challenges of one owner at most: a new one replaces the owner's oldest.
pub const MAX_OPEN_PER_OWNER: usize = 4;
/// No time after 2100-01-01 is accepted in a signed text: the `cron` crate's schedules end
/// there, and arithmetic on later dates is where libraries overflow.
pub const LAST_TIME_MS: u64 = 4_102_444_800_000;

const FIRST_LINE: &str = "avs-node automation sign-in";
const TOKEN_PREFIX: &str = "avs1";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("the message is not an avs-node sign-in challenge: {0}")]
    Malformed(String),
    #[error("the challenge was made for network digest {theirs}, this node's is {ours}")]
    ForeignNetwork { theirs: String, ours: String },
    #[error("the challenge expired {0} ms ago; ask for a new one")]
    Expired(u64),
    #[error("the challenge's nonce was not issued by this node for this owner, or was used")]
    UnknownNonce,
    #[error("the signature does not recover the challenge's owner: {0}")]
    BadSignature(String),
    #[error("{MAX_OPEN_CHALLENGES} challenges are open; try again in a few minutes")]
    TooManyChallenges,
    #[error("invalid token: {0}")]
    BadToken(&'static str),
    #[error("the token expired; sign in again")]
    TokenExpired,
}

/// The network a node signs in for, and the node's operator address.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub digest: [u8; 4],
    pub node: Address,
}

/// A signed challenge: the owner's grant to one node (docs/protocol.md, 7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub message: String,
    pub signature: Vec<u8>,
}

/// What a valid grant says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantTerms {
    pub owner: Address,
    pub node: Address,
    /// From when it can be used: when its challenge was issued.
    pub session_from_ms: u64,
    pub session_expires_ms: u64,
}

impl From<pb::StoredGrant> for Grant {
    fn from(stored: pb::StoredGrant) -> Self {
        Self { message: stored.message, signature: stored.signature }
    }
}

impl From<Grant> for pb::StoredGrant {
    fn from(grant: Grant) -> Self {
        Self { message: grant.message, signature: grant.signature }
    }
}

impl Grant {
    /// The grant a replicated request carries.
    pub fn of_request(request: &pb::ReplicatedRequest) -> Self {
        Self { message: request.grant.clone(), signature: request.grant_signature.clone() }
    }

    /// Checks the grant for `network_digest` without any node-local state: the text, the
    /// network, and that the signature is the owner's. Attesters call this.
    pub fn verify(&self, network_digest: [u8; 4]) -> Result<GrantTerms, AuthError> {
        let challenge = Challenge::parse(&self.message)?;
        let ours = digest_text(network_digest);
        if challenge.digest != ours {
            return Err(AuthError::ForeignNetwork { theirs: challenge.digest, ours });
        }
        let signature = Signature::from_raw(&self.signature)
            .map_err(|e| AuthError::BadSignature(format!("not a 65-byte signature: {e}")))?;
        let signer = signature
            .recover_address_from_msg(self.message.as_bytes())
            .map_err(|e| AuthError::BadSignature(e.to_string()))?;
        if signer != challenge.owner {
            return Err(AuthError::BadSignature(format!(
                "signed by {}, not {}",
                lower_hex_address(&signer),
                lower_hex_address(&challenge.owner)
            )));
        }
        // Only what a node issues: a session of exactly TOKEN_TTL_MS from the challenge, before
        // LAST_TIME_MS. A grant with another length was not issued by an honest node.
        let from = challenge.expires_ms.saturating_sub(CHALLENGE_TTL_MS);
        if challenge.session_expires_ms != from.saturating_add(TOKEN_TTL_MS)
            || challenge.session_expires_ms > LAST_TIME_MS
        {
            return Err(AuthError::Malformed("the session is not the one a node issues".into()));
        }
        Ok(GrantTerms {
            owner: challenge.owner,
            node: challenge.node,
            session_from_ms: challenge.expires_ms.saturating_sub(CHALLENGE_TTL_MS),
            session_expires_ms: challenge.session_expires_ms,
        })
    }
}

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    pub token: String,
    pub expires_ms: u64,
    pub owner: Address,
    pub grant: Grant,
}

/// A parsed challenge text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    network: String,
    digest: String,
    node: Address,
    owner: Address,
    nonce: [u8; 16],
    expires_ms: u64,
    session_expires_ms: u64,
}

impl Challenge {
    fn text(&self) -> String {
        format!(
            "{FIRST_LINE}\nnetwork: {}\nnetwork digest: {}\nnode: {}\nowner: {}\nnonce: 0x{}\n\
             expires: {}\nsession expires: {}",
            self.network,
            self.digest,
            lower_hex_address(&self.node),
            lower_hex_address(&self.owner),
            hex::encode(self.nonce),
            self.expires_ms,
            self.session_expires_ms
        )
    }

    /// Parses exactly the lines [`Challenge::text`] writes (and refuses anything else, so one
    /// signed text has one meaning).
    fn parse(text: &str) -> Result<Self, AuthError> {
        let malformed = |what: &str| AuthError::Malformed(what.to_owned());
        let mut lines = text.split('\n');
        if lines.next() != Some(FIRST_LINE) {
            return Err(malformed("the first line is not the sign-in header"));
        }
        let mut field = |name: &str| -> Result<&str, AuthError> {
            lines
                .next()
                .and_then(|line| line.strip_prefix(name)?.strip_prefix(": "))
                .ok_or_else(|| malformed(&format!("line \"{name}: ...\" missing or out of order")))
        };
        let network = field("network")?.to_owned();
        let digest = field("network digest")?.to_owned();
        let node_text = field("node")?;
        let owner_text = field("owner")?;
        let nonce_text = field("nonce")?;
        let expires_text = field("expires")?;
        let session_text = field("session expires")?;
        if lines.next().is_some() {
            return Err(malformed("lines after \"session expires\""));
        }
        let node = parse_address(node_text).ok_or_else(|| malformed("node is not an address"))?;
        let owner =
            parse_address(owner_text).ok_or_else(|| malformed("owner is not an address"))?;
        let nonce = nonce_text
            .strip_prefix("0x")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 16]>::try_from(b).ok())
            .ok_or_else(|| malformed("nonce must be 0x and 32 hex digits"))?;
        let expires_ms =
            parse_ms(expires_text).ok_or_else(|| malformed("expires must be a decimal unix ms"))?;
        let session_expires_ms = parse_ms(session_text)
            .ok_or_else(|| malformed("session expires must be a decimal unix ms"))?;
        Ok(Self { network, digest, node, owner, nonce, expires_ms, session_expires_ms })
    }
}

/// `0x` and 40 lowercase hex digits, nothing else.
fn parse_address(text: &str) -> Option<Address> {
    let address: Address = text.parse().ok()?;
    (text == lower_hex_address(&address)).then_some(address)
}

/// A decimal number written the one way `u64::to_string` writes it.
fn parse_ms(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|v| v.to_string() == text)
}

fn lower_hex_address(address: &Address) -> String {
    format!("0x{}", hex::encode(address.as_slice()))
}

fn digest_text(digest: [u8; 4]) -> String {
    format!("0x{}", hex::encode(digest))
}

/// Issues challenges, exchanges them for tokens and checks tokens.
pub struct Auth {
    network: Network,
    secret: [u8; 32],
    /// Open challenges by nonce: the owner it was issued for and its expiry.
    /// Open challenges by nonce: the owner, the expiry and the exact text issued.
    open: HashMap<[u8; 16], (Address, u64, String)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth").field("network", &self.network).finish_non_exhaustive()
    }
}

impl Auth {
    /// `secret` keys the tokens' HMAC; it never leaves the node.
    pub fn new(network: Network, secret: [u8; 32]) -> Self {
        Self { network, secret, open: HashMap::new() }
    }

    /// A challenge for `owner` with a fresh `nonce` (from the caller's randomness), valid
    /// [`CHALLENGE_TTL_MS`] from `now_ms`: the text to sign and its expiry.
    pub fn challenge(
        &mut self,
        owner: Address,
        nonce: [u8; 16],
        now_ms: u64,
    ) -> Result<(String, u64), AuthError> {
        self.open.retain(|_, (_, expires, _)| *expires >= now_ms);
        let mut own: Vec<([u8; 16], u64)> = self
            .open
            .iter()
            .filter(|(_, (who, ..))| *who == owner)
            .map(|(nonce, (_, expires, _))| (*nonce, *expires))
            .collect();
        if own.len() >= MAX_OPEN_PER_OWNER {
            own.sort_by_key(|(nonce, expires)| (*expires, *nonce));
            for (nonce, _) in own.iter().take(own.len() + 1 - MAX_OPEN_PER_OWNER) {
                self.open.remove(nonce);
            }
        }
        if self.open.len() >= MAX_OPEN_CHALLENGES {
            return Err(AuthError::TooManyChallenges);
        }
        let expires_ms = now_ms.saturating_add(CHALLENGE_TTL_MS);
        let challenge = Challenge {
            network: self.network.name.clone(),
            digest: digest_text(self.network.digest),
            node: self.network.node,
            owner,
            nonce,
            expires_ms,
            session_expires_ms: now_ms.saturating_add(TOKEN_TTL_MS),
        };
        let text = challenge.text();
        self.open.insert(nonce, (owner, expires_ms, text.clone()));
        Ok((text, expires_ms))
    }

    /// Checks a signed challenge (in the order of docs/protocol.md, 7.5) and answers a token
    /// and its expiry. The nonce is consumed whatever the outcome once the text parses and
    /// names this network and node; the text must be exactly the one issued for it.
    pub fn exchange(
        &mut self,
        message: &str,
        signature: &[u8],
        now_ms: u64,
    ) -> Result<SignIn, AuthError> {
        let challenge = Challenge::parse(message)?;
        let ours = digest_text(self.network.digest);
        if challenge.digest != ours || challenge.network != self.network.name {
            return Err(AuthError::ForeignNetwork { theirs: challenge.digest, ours });
        }
        if challenge.node != self.network.node {
            return Err(AuthError::UnknownNonce);
        }
        let issued = self.open.remove(&challenge.nonce);
        if challenge.expires_ms < now_ms {
            return Err(AuthError::Expired(now_ms.saturating_sub(challenge.expires_ms)));
        }
        // Byte for byte what this node issued: no line the client changed (the session's end
        // above all) is ever signed into a token or a grant.
        match issued {
            Some((.., text)) if text == message => {}
            _ => return Err(AuthError::UnknownNonce),
        }
        let grant = Grant { message: message.to_owned(), signature: signature.to_vec() };
        let terms = grant.verify(self.network.digest)?;
        let expires_ms = terms.session_expires_ms;
        Ok(SignIn {
            token: self.token(&terms.owner, expires_ms),
            expires_ms,
            owner: terms.owner,
            grant,
        })
    }

    /// The token HMAC over `body`.
    fn keyed(&self, body: &str) -> Hmac<Sha256> {
        // An HMAC takes a key of any length: this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(body.as_bytes());
        mac
    }

    fn mac(&self, body: &str) -> String {
        hex::encode(self.keyed(body).finalize().into_bytes())
    }

    fn token(&self, owner: &Address, expires_ms: u64) -> String {
        let body = format!("{TOKEN_PREFIX}.{}.{expires_ms}", hex::encode(owner.as_slice()));
        let mut token = body.clone();
        let _ = write!(token, ".{}", self.mac(&body));
        token
    }

    /// The owner a token names, if this node issued it and it has not expired.
    pub fn verify(&self, token: &str, now_ms: u64) -> Result<Address, AuthError> {
        let (body, mac) = token.rsplit_once('.').ok_or(AuthError::BadToken("no signature"))?;
        let given = hex::decode(mac).map_err(|_| AuthError::BadToken("signature is not hex"))?;
        // Constant-time comparison (hmac's verify_slice).
        self.keyed(body)
            .verify_slice(&given)
            .map_err(|_| AuthError::BadToken("not issued by this node"))?;
        let mut parts = body.split('.');
        let (Some(TOKEN_PREFIX), Some(owner), Some(expires), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::BadToken("not an avs1 token"));
        };
        let owner = hex::decode(owner)
            .ok()
            .filter(|b| b.len() == 20)
            .map(|b| Address::from_slice(&b))
            .ok_or(AuthError::BadToken("owner is not an address"))?;
        let expires: u64 = expires.parse().map_err(|_| AuthError::BadToken("bad expiry"))?;
        if expires < now_ms {
            return Err(AuthError::TokenExpired);
        }
        Ok(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    const NOW: u64 = 1_800_000_000_000;

    fn network() -> Network {
        Network { name: "avs-test".into(), digest: [1, 2, 3, 4], node: Address::repeat_byte(0x0d) }
    }

    fn auth() -> Auth {
        Auth::new(network(), [7; 32])
    }

    fn wallet(seed: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_slice(&[seed; 32]).unwrap()
    }

    fn sign(wallet: &PrivateKeySigner, message: &str) -> Vec<u8> {
        wallet.sign_message_sync(message.as_bytes()).unwrap().as_bytes().to_vec()
    }

    #[test]
    fn a_signed_challenge_gives_a_token_that_names_its_owner() {
        let mut auth = auth();
        let alice = wallet(1);
        let (message, expires) = auth.challenge(alice.address(), [9; 16], NOW).unwrap();
        assert_eq!(expires, NOW + CHALLENGE_TTL_MS);
        assert!(message.contains("network digest: 0x01020304"), "{message}");
        assert!(message.contains(&format!("node: {}", lower_hex_address(&network().node))));
        let signed = auth.exchange(&message, &sign(&alice, &message), NOW + 1).unwrap();
        let (token, until) = (signed.token.clone(), signed.expires_ms);
        assert_eq!(until, NOW + TOKEN_TTL_MS);
        assert_eq!(auth.verify(&token, NOW + 2).unwrap(), alice.address());
        assert_eq!(auth.verify(&token, until + 1).unwrap_err(), AuthError::TokenExpired);
        // The signed text is a grant any operator can check, for this network only.
        let terms = signed.grant.verify([1, 2, 3, 4]).unwrap();
        assert_eq!((terms.owner, terms.node), (alice.address(), network().node));
        assert_eq!((terms.session_from_ms, terms.session_expires_ms), (NOW, until));
        assert!(matches!(signed.grant.verify([9, 9, 9, 9]), Err(AuthError::ForeignNetwork { .. })));
        let mut forged = signed.grant.clone();
        forged.message = forged.message.replace(&until.to_string(), &(until + 1).to_string());
        assert!(matches!(forged.verify([1, 2, 3, 4]), Err(AuthError::BadSignature(_))));
    }

    #[test]
    fn replayed_expired_foreign_and_misattributed_signatures_are_refused() {
        let mut auth = auth();
        let (alice, mallory) = (wallet(1), wallet(2));

        // Replay: the same message and signature a second time.
        let (message, _) = auth.challenge(alice.address(), [1; 16], NOW).unwrap();
        let signature = sign(&alice, &message);
        auth.exchange(&message, &signature, NOW).unwrap();
        assert_eq!(auth.exchange(&message, &signature, NOW).unwrap_err(), AuthError::UnknownNonce);

        // Expired.
        let (message, expires) = auth.challenge(alice.address(), [2; 16], NOW).unwrap();
        let late = auth.exchange(&message, &sign(&alice, &message), expires + 1);
        assert_eq!(late.unwrap_err(), AuthError::Expired(1));

        // Signed for another network: the same text with that network's digest.
        let (message, _) = auth.challenge(alice.address(), [3; 16], NOW).unwrap();
        let foreign = message.replace("0x01020304", "0x0a0b0c0d");
        let err = auth.exchange(&foreign, &sign(&alice, &foreign), NOW).unwrap_err();
        assert!(matches!(err, AuthError::ForeignNetwork { .. }), "{err}");

        // Signed by someone else than the owner named in the text.
        let (message, _) = auth.challenge(alice.address(), [4; 16], NOW).unwrap();
        let err = auth.exchange(&message, &sign(&mallory, &message), NOW).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature(_)), "{err}");
        // ... and that nonce is gone: alice must ask again.
        let err = auth.exchange(&message, &sign(&alice, &message), NOW).unwrap_err();
        assert_eq!(err, AuthError::UnknownNonce);

        // A nonce never issued, and a text with a changed owner.
        let (message, _) = auth.challenge(alice.address(), [5; 16], NOW).unwrap();
        let made_up = message.replace(&hex::encode([5u8; 16]), &hex::encode([6u8; 16]));
        let err = auth.exchange(&made_up, &sign(&alice, &made_up), NOW).unwrap_err();
        assert_eq!(err, AuthError::UnknownNonce);
        let moved = message
            .replace(&lower_hex_address(&alice.address()), &lower_hex_address(&mallory.address()));
        let err = auth.exchange(&moved, &sign(&mallory, &moved), NOW).unwrap_err();
        assert_eq!(err, AuthError::UnknownNonce);

        // A longer session than issued, signed by the owner: not the text issued.
        let (message, _) = auth.challenge(alice.address(), [8; 16], NOW).unwrap();
        let session = (NOW + TOKEN_TTL_MS).to_string();
        let forever = message.replace(&session, &u64::MAX.to_string());
        let err = auth.exchange(&forever, &sign(&alice, &forever), NOW).unwrap_err();
        assert_eq!(err, AuthError::UnknownNonce);
        // ... nor a grant any operator accepts.
        let grant = Grant { message: forever.clone(), signature: sign(&alice, &forever) };
        assert!(matches!(grant.verify([1, 2, 3, 4]), Err(AuthError::Malformed(_))));

        // Garbage.
        assert!(matches!(auth.exchange("hello", &[0; 65], NOW), Err(AuthError::Malformed(_))));
        let (message, _) = auth.challenge(alice.address(), [7; 16], NOW).unwrap();
        let err = auth.exchange(&message, &[1, 2, 3], NOW).unwrap_err();
        assert!(matches!(err, AuthError::BadSignature(_)), "{err}");
    }

    #[test]
    fn forged_and_tampered_tokens_are_refused() {
        let mut auth = auth();
        let alice = wallet(1);
        let (message, _) = auth.challenge(alice.address(), [1; 16], NOW).unwrap();
        let token = auth.exchange(&message, &sign(&alice, &message), NOW).unwrap().token;
        // Another owner in the body, a later expiry, another node's secret, garbage.
        let other = token.replace(&hex::encode(alice.address()), &hex::encode([0xee; 20]));
        assert!(matches!(auth.verify(&other, NOW), Err(AuthError::BadToken(_))));
        let (body, mac) = token.rsplit_once('.').unwrap();
        let (head, _) = body.rsplit_once('.').unwrap();
        let later = format!("{head}.{}.{mac}", u64::MAX);
        assert!(matches!(auth.verify(&later, NOW), Err(AuthError::BadToken(_))));
        let elsewhere = Auth::new(network(), [8; 32]);
        assert!(matches!(elsewhere.verify(&token, NOW), Err(AuthError::BadToken(_))));
        for junk in ["", "avs1", "a.b.c.d", "avs1.zz.1.00"] {
            assert!(matches!(auth.verify(junk, NOW), Err(AuthError::BadToken(_))), "{junk}");
        }
    }

    #[test]
    fn open_challenges_are_bounded_per_owner_and_in_all_and_expire() {
        let mut auth = auth();
        // One owner asking again and again holds MAX_OPEN_PER_OWNER: the oldest make room.
        let alice = wallet(1);
        let mut messages = Vec::new();
        for i in 0..10u8 {
            messages.push(auth.challenge(alice.address(), [i; 16], NOW + u64::from(i)).unwrap().0);
        }
        assert_eq!(auth.open.len(), MAX_OPEN_PER_OWNER);
        let oldest = &messages[0];
        let err = auth.exchange(oldest, &sign(&alice, oldest), NOW + 20).unwrap_err();
        assert_eq!(err, AuthError::UnknownNonce);
        let newest = &messages[9];
        auth.exchange(newest, &sign(&alice, newest), NOW + 20).unwrap();

        // Many owners: the global bound.
        let mut auth = super::tests::auth();
        for i in 0..MAX_OPEN_CHALLENGES {
            let mut nonce = [0; 16];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let owner = Address::from_word(alloy::primitives::B256::from(U256::from(i)));
            auth.challenge(owner, nonce, NOW).unwrap();
        }
        let owner = wallet(2).address();
        assert_eq!(
            auth.challenge(owner, [0xff; 16], NOW).unwrap_err(),
            AuthError::TooManyChallenges
        );
        // Once they expired, there is room again.
        auth.challenge(owner, [0xff; 16], NOW + CHALLENGE_TTL_MS + 1).unwrap();
    }
}
