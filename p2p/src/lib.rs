//! avs-p2p: libp2p networking for avs-node (see ARCHITECTURE.md). Lands with the p2p issue.
