//! `signing_root_test`: network digest, domain and signing root per message kind, and whether a
//! given signature is valid for that network and kind (`avs_consensus::signing`).
//!
//! Inputs: `genesis` (a `GenesisConfig` in the `ssz` JSON form), `messageKind` (`"proposal"`,
//! `"vote"` or `"checkin"`), `message` (a `Proposal` or `VoteData`; for `checkin`, an
//! `objectRoot` instead), `pubkey`, `signature`. Output: `networkDigest`, `domain`,
//! `objectRoot`, `signingRoot`, `signatureValid`.

use anyhow::{Context, bail};
use avs_consensus::bls::{self, PublicKey, Signature};
use avs_consensus::signing::{
    DOMAIN_CHECKIN, DOMAIN_PROPOSAL, DOMAIN_VOTE, domain, network_digest, proposal_signing_root,
    signing_root, vote_signing_root,
};
use avs_consensus::types::{Block, GenesisConfig, Proposal, Root, VoteData, byte_list, root_of};
use avs_consensus::types::{Epoch, Height, OperatorIndex, View};
use serde_json::{Value, json};

use super::common::{self, secret};
use super::ssz_json::JsonForm;
use super::{Case, evaluated};
use crate::Fixture;
use crate::json::{field, get_fixed, get_hex, get_str, hex0x};

const FORMAT: &str = "signing_root_test";

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    super::check_output(fixture, FORMAT, evaluate)
}

fn evaluate(input: &Value) -> anyhow::Result<Value> {
    let genesis = GenesisConfig::from_json(field(input, "genesis")?).context("genesis")?;
    let digest = network_digest(&genesis)?;
    let (domain_type, object_root, signing) = match get_str(input, "messageKind")? {
        "proposal" => {
            let p = Proposal::from_json(field(input, "message")?).context("message")?;
            (DOMAIN_PROPOSAL, root_of(&p)?, proposal_signing_root(&p, digest)?)
        }
        "vote" => {
            let v = VoteData::from_json(field(input, "message")?).context("message")?;
            (DOMAIN_VOTE, root_of(&v)?, vote_signing_root(&v, digest)?)
        }
        "checkin" => {
            let root: Root = get_fixed(input, "objectRoot")?;
            (DOMAIN_CHECKIN, root, signing_root(root, domain(DOMAIN_CHECKIN, digest))?)
        }
        other => bail!("unknown messageKind {other:?}"),
    };
    let pk = PublicKey::from_bytes(&get_hex(input, "pubkey")?).ok();
    let sig = Signature::from_bytes(&get_hex(input, "signature")?).ok();
    let valid = match (pk, sig) {
        (Some(pk), Some(sig)) => bls::verify(&pk, &signing, &sig),
        _ => false,
    };
    Ok(json!({
        "networkDigest": hex0x(&digest),
        "domain": hex0x(&domain(domain_type, digest)),
        "objectRoot": hex0x(&object_root),
        "signingRoot": hex0x(&signing),
        "signatureValid": valid,
    }))
}

/// How the signature of a case is made: by which operator, over which signing root.
enum Signed {
    /// Operator `i`, over the case's own signing root.
    Correct(usize),
    /// Operator `i`, over the object root under another domain type or network digest.
    Under(usize, [u8; 4], [u8; 4]),
}

fn case(
    name: &str,
    given: &str,
    genesis: &GenesisConfig,
    kind: &str,
    message: Value,
    signed: Signed,
) -> anyhow::Result<Case> {
    let mut input = json!({ "genesis": genesis.to_json(), "messageKind": kind });
    if kind == "checkin" {
        input["objectRoot"] = message;
    } else {
        input["message"] = message;
    }
    // Sign with the real helpers: take the computed roots from a first evaluation.
    input["pubkey"] = hex0x(&[0u8; 48]);
    input["signature"] = hex0x(&[0u8; 96]);
    let probe = evaluate(&input)?;
    let object: Root = get_fixed(&probe, "objectRoot")?;
    let (i, root) = match signed {
        Signed::Correct(i) => (i, get_fixed(&probe, "signingRoot")?),
        Signed::Under(i, domain_type, digest) => {
            (i, signing_root(object, domain(domain_type, digest))?)
        }
    };
    let key = secret(i)?;
    input["pubkey"] = hex0x(&key.public_key().to_bytes());
    input["signature"] = hex0x(&key.sign(&root).to_bytes());
    let valid = matches!(signed, Signed::Correct(_));
    let description = format!(
        "Given {given}, when its signing root is computed and the signature checked, then the \
         digest, domain and roots are as given and the signature is {}.",
        if valid { "valid" } else { "refused" }
    );
    evaluated(name, &description, input, evaluate)
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let a = common::genesis("avs-mainnet", &[1, 1])?;
    let b = common::genesis("avs-testnet", &[1, 1])?;
    let a_later = GenesisConfig { genesis_time: a.genesis_time + 1, ..a.clone() };
    let digest_b = network_digest(&b)?;
    let digest_a = network_digest(&a)?;
    let root = [0x42; 32];
    let notarize = VoteData::notarize(Epoch::ZERO, View::new(3), root).to_json();
    let proposal = Proposal {
        view: View::new(3),
        epoch: Epoch::ZERO,
        block: Block {
            height: Height::new(2),
            parent_root: [0x24; 32],
            proposer_index: OperatorIndex::new(1),
            ..Default::default()
        },
    }
    .to_json();
    let empty_name = GenesisConfig { network_name: byte_list(&[])?, ..a.clone() };
    Ok(vec![
        case(
            "vote_notarize",
            "a NOTARIZE vote on network A",
            &a,
            "vote",
            notarize.clone(),
            Signed::Correct(0),
        )?,
        case(
            "vote_nullify",
            "a NULLIFY vote on network A",
            &a,
            "vote",
            VoteData::nullify(Epoch::ZERO, View::new(4)).to_json(),
            Signed::Correct(1),
        )?,
        case(
            "vote_finalize",
            "a FINALIZE vote on network A",
            &a,
            "vote",
            VoteData::finalize(Epoch::new(2), View::new(9), root).to_json(),
            Signed::Correct(0),
        )?,
        case(
            "proposal",
            "a proposal on network A",
            &a,
            "proposal",
            proposal.clone(),
            Signed::Correct(1),
        )?,
        case(
            "checkin",
            "a check-in object root on network A",
            &a,
            "checkin",
            hex0x(&[0x77; 32]),
            Signed::Correct(0),
        )?,
        case(
            "vote_other_network",
            "the same NOTARIZE vote on network B",
            &b,
            "vote",
            notarize.clone(),
            Signed::Correct(0),
        )?,
        case(
            "vote_genesis_time_changes_digest",
            "the NOTARIZE vote on network A with genesis one second later",
            &a_later,
            "vote",
            notarize.clone(),
            Signed::Correct(0),
        )?,
        case(
            "vote_empty_network_name",
            "a NOTARIZE vote on a network with an empty name",
            &empty_name,
            "vote",
            notarize.clone(),
            Signed::Correct(1),
        )?,
        case(
            "vote_signed_for_other_network",
            "a NOTARIZE vote on network A signed with network B's digest",
            &a,
            "vote",
            notarize.clone(),
            Signed::Under(0, DOMAIN_VOTE, digest_b),
        )?,
        case(
            "vote_signed_as_proposal",
            "a NOTARIZE vote signed under the PROPOSAL domain",
            &a,
            "vote",
            notarize.clone(),
            Signed::Under(0, DOMAIN_PROPOSAL, digest_a),
        )?,
        case(
            "proposal_signed_as_vote",
            "a proposal signed under the VOTE domain",
            &a,
            "proposal",
            proposal,
            Signed::Under(1, DOMAIN_VOTE, digest_a),
        )?,
        case(
            "checkin_signed_as_vote",
            "a check-in root signed under the VOTE domain",
            &a,
            "checkin",
            hex0x(&[0x77; 32]),
            Signed::Under(0, DOMAIN_VOTE, digest_a),
        )?,
        case(
            "vote_signed_with_zero_digest",
            "a NOTARIZE vote on network A signed with an all-zero network digest",
            &a,
            "vote",
            notarize,
            Signed::Under(1, DOMAIN_VOTE, [0; 4]),
        )?,
    ])
}
