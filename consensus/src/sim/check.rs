//! The simulation's checkers, kept apart so each has its own negative test: a checker that
//! cannot fail proves nothing.

use std::collections::BTreeMap;

use crate::types::{Root, SignedVote, VoteKind};

/// Safety: every node's finalized sequence is a gap-free chain of heights, and any two nodes
/// agree at every height both finalized.
pub(crate) fn check_safety(histories: &[Vec<(u64, Root)>]) -> Result<(), String> {
    let mut by_height: BTreeMap<u64, (usize, Root)> = BTreeMap::new();
    for (node, h) in histories.iter().enumerate() {
        for pair in h.windows(2) {
            if pair[1].0 != pair[0].0 + 1 {
                return Err(format!(
                    "node {node} finalized height {} after {}",
                    pair[1].0, pair[0].0
                ));
            }
        }
        for (height, root) in h {
            match by_height.get(height) {
                Some((other, r)) if r != root => {
                    return Err(format!(
                        "conflicting finality at height {height}: node {other} vs node {node}"
                    ));
                }
                Some(_) => {}
                None => {
                    by_height.insert(*height, (node, *root));
                }
            }
        }
    }
    Ok(())
}

/// Rule 8 over everything one node ever signed: at most one NOTARIZE and one FINALIZE root
/// per (epoch, view), never NULLIFY and FINALIZE in the same view.
pub(crate) fn check_own_votes(votes: &[SignedVote]) -> Result<(), String> {
    #[derive(Default)]
    struct Seen {
        notarize: Option<Root>,
        nullify: bool,
        finalize: Option<Root>,
    }
    let mut seen: BTreeMap<(u64, u64), Seen> = BTreeMap::new();
    for v in votes {
        let s = seen.entry((v.data.epoch, v.data.view)).or_default();
        let root = v.data.block_root;
        match v.data.vote_kind() {
            Some(VoteKind::Notarize) => {
                if s.notarize.is_some_and(|r| r != root) {
                    return Err(format!("two NOTARIZE in view {}", v.data.view));
                }
                s.notarize = Some(root);
            }
            Some(VoteKind::Nullify) => {
                if s.finalize.is_some() {
                    return Err(format!("NULLIFY after FINALIZE in view {}", v.data.view));
                }
                s.nullify = true;
            }
            Some(VoteKind::Finalize) => {
                if s.nullify {
                    return Err(format!("FINALIZE after NULLIFY in view {}", v.data.view));
                }
                if s.finalize.is_some_and(|r| r != root) {
                    return Err(format!("two FINALIZE in view {}", v.data.view));
                }
                s.finalize = Some(root);
            }
            None => return Err("unknown vote kind".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::VoteData;

    #[test]
    fn safety_checker_detects_conflict_and_gaps() {
        let a = vec![(1, [1; 32]), (2, [2; 32])];
        let b = vec![(1, [1; 32]), (2, [3; 32])];
        assert!(check_safety(&[a.clone(), a.clone()]).is_ok());
        assert!(check_safety(&[a.clone(), b]).is_err());
        assert!(check_safety(&[vec![(1, [1; 32]), (3, [3; 32])]]).is_err());
        // A prefix is fine.
        assert!(check_safety(&[a, vec![(1, [1; 32])]]).is_ok());
    }

    #[test]
    fn vote_checker_detects_contradictions() {
        let v = |data| SignedVote { data, ..Default::default() };
        assert!(
            check_own_votes(&[v(VoteData::notarize(0, 1, [1; 32])), v(VoteData::nullify(0, 1))])
                .is_ok()
        );
        assert!(
            check_own_votes(&[
                v(VoteData::notarize(0, 1, [1; 32])),
                v(VoteData::notarize(0, 1, [2; 32]))
            ])
            .is_err()
        );
        assert!(
            check_own_votes(&[v(VoteData::nullify(0, 1)), v(VoteData::finalize(0, 1, [1; 32]))])
                .is_err()
        );
        assert!(
            check_own_votes(&[v(VoteData::finalize(0, 1, [1; 32])), v(VoteData::nullify(0, 1))])
                .is_err()
        );
        // Same view number in another epoch is another view.
        assert!(
            check_own_votes(&[v(VoteData::nullify(0, 1)), v(VoteData::finalize(1, 1, [1; 32]))])
                .is_ok()
        );
    }
}
