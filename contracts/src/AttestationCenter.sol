// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.26;

/// On-chain settlement of avs-node blocks (docs/protocol.md sections 3, 4, 6, 11).
///
/// A block is settled when it comes with a FINALIZE certificate whose signers hold strictly
/// more than 2/3 of its epoch's voting power (`3 * signed > 2 * total`) and whose BLS12-381
/// aggregate signature (min-pubkey, ciphersuite BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_)
/// verifies over the vote signing root. Everything the signature covers is recomputed here:
/// the block root (SSZ hash_tree_root of the header and the task results), the VoteData root,
/// the signing root, and hash_to_curve G2 (RFC 9380) of that root. Epoch hand-over follows
/// the chain of epoch-ending blocks: the next epoch's set is read from the post-state that the
/// finalized epoch-ending block commits to through its `state_root`.
///
/// Per epoch only a commitment to the set (keccak256 of its uncompressed keys and powers), the
/// total power and its height window are stored; callers pass the set in calldata.
///
/// Self-contained: SHA-256 (0x02), MODEXP (0x05) and the EIP-2537 precompiles
/// (0x0b G1ADD, 0x0d G2ADD, 0x0f PAIRING_CHECK, 0x11 MAP_FP2_TO_G2) through STATICCALL, so it
/// compiles for any EVM version but runs only where EIP-2537 is active (Prague and later).
contract AttestationCenter {
    // ------------------------------------------------------------------ types

    /// A FINALIZE certificate (`VoteData.kind` is always 2 here).
    struct Certificate {
        uint64 viewNumber; // VoteData.view
        uint64 epoch; // VoteData.epoch
        bytes signers; // SSZ serialization of Bitlist[1024] (with its length-marker bit)
        bytes signature; // aggregate signature, uncompressed EIP-2537 G2 (256 bytes)
    }

    /// An epoch's operator set as the contract commits to it, in operator-index order.
    struct OperatorKeys {
        bytes keys; // n uncompressed EIP-2537 G1 public keys, 128 bytes each, concatenated
        uint64[] powers; // n voting powers
    }

    /// The block's fixed fields (the body is passed as the task results).
    struct BlockHeader {
        uint64 height;
        bytes32 parentRoot;
        uint64 proposerIndex;
        bytes32 stateRoot;
    }

    /// SSZ TaskResult (5 fields).
    struct TaskResult {
        uint16 taskDefinitionId;
        uint64 performerIndex;
        bytes proofOfTask; // ByteList[65536]
        bytes data; // ByteList[524288]
        bytes signature; // ByteVector[96], opaque here
    }

    /// One operator of the next epoch's set: its SSZ fields plus its key uncompressed.
    struct NextOperator {
        bytes20 addr; // Operator.address
        bytes pubkey; // Operator.pubkey, 48-byte compressed G1
        bytes pop; // Operator.pop, 96 bytes
        uint64 power; // Operator.power
        bytes pubkeyG1; // the same key, uncompressed EIP-2537 G1 (128 bytes)
    }

    /// The ChainState fields after the epoch-ending block that are not in the block itself.
    /// `epoch`, `height` and `parent_root` of that state are the certificate's epoch and the
    /// header's height and parent root (protocol section 7), so they are not passed again.
    struct PostState {
        bytes32 operatorsRoot; // hash_tree_root(ChainState.operators)
        NextOperator[] nextOperators; // ChainState.next_operators, in order
        bytes32 taskStatesRoot; // hash_tree_root(ChainState.task_states)
    }

    /// Roots computed from a block: its own, each task result's, and for each task
    /// hash_tree_root of {proof_of_task, data} pair (the right half of its TaskMessage tree).
    struct BlockRoots {
        bytes32 root;
        bytes32[] taskRoots;
        bytes32[] messageHalves;
    }

    /// What `_record` writes and emits.
    struct Settled {
        bytes32 root;
        uint64 height;
        uint256 signedPower;
        uint256 totalPower;
        bytes32[] taskRoots;
        bytes32[] taskIds;
    }

    struct EpochInfo {
        bytes32 commitment; // keccak256(keys ‖ powers as 32-byte words), see operatorSetCommitment
        uint128 totalPower;
        uint64 firstHeight; // lowest block height of the epoch
        uint64 lastHeight; // height of its epoch-ending block; type(uint64).max while open
    }

    // ------------------------------------------------------------------ errors

    error MalformedOperatorSet();
    error ZeroTotalPower();
    error EpochUnknown(uint64 epoch, uint64 currentEpoch);
    error EpochNotCurrent(uint64 epoch, uint64 currentEpoch);
    error HeightOutsideEpoch(uint64 height, uint64 epoch, uint64 firstHeight, uint64 lastHeight);
    error HeightAlreadySettled(uint64 height, bytes32 settledRoot);
    error OperatorSetMismatch(bytes32 given, bytes32 committed);
    error MalformedSigners();
    error SignersLengthMismatch(uint256 bits, uint256 operators);
    error QuorumNotReached(uint256 signedPower, uint256 totalPower);
    error MalformedSignature();
    error InvalidSignature();
    error PrecompileFailed(uint256 precompile);
    error TooManyTasks(uint256 count);
    error MalformedTaskResult(uint256 index);
    error MalformedNextOperator(uint256 index);
    error NextKeyMismatch(uint256 index);
    error NotEpochEnding();
    error StateRootMismatch(bytes32 computed, bytes32 stateRoot);

    // ------------------------------------------------------------------ events

    /// One per settled task result. `taskId` is the protocol's task id (docs/protocol.md 7.3):
    /// hash_tree_root(TaskMessage{task_definition_id, performer: the performer's 48-byte
    /// compressed key, proof_of_task, data}), the key taken from the committed set at
    /// `performerIndex` (zero if that index is outside the set, which no valid block has).
    /// `taskResultRoot` is hash_tree_root of the TaskResult itself (5 fields, with signature).
    event TaskResultSettled(
        bytes32 indexed taskId,
        bytes32 indexed blockRoot,
        uint16 indexed taskDefinitionId,
        bytes32 taskResultRoot,
        uint64 height,
        uint256 index,
        uint64 performerIndex
    );
    /// One per settled block.
    event BlockSettled(
        bytes32 indexed blockRoot,
        uint64 indexed height,
        uint64 indexed epoch,
        uint64 viewNumber,
        uint256 signedPower,
        uint256 totalPower,
        uint256 taskCount
    );
    /// Epoch 0 at deployment and each epoch started by `advanceEpoch`. `operatorSetRoot` is
    /// hash_tree_root(OperatorSet) of the new set (zero for epoch 0: not known here).
    event EpochStarted(
        uint64 indexed epoch,
        bytes32 commitment,
        uint256 totalPower,
        uint64 firstHeight,
        uint256 operatorCount,
        bytes32 operatorSetRoot
    );

    // ------------------------------------------------------------------ constants

    uint256 private constant MAX_OPERATORS = 1024;
    uint256 private constant MAX_TASKS_PER_BLOCK = 16;
    uint256 private constant MAX_PROOF_BYTES = 65536;
    uint256 private constant MAX_TASK_DATA_BYTES = 524288;
    uint8 private constant FINALIZE = 2;

    /// SSZ zero-subtree roots: zero hash of depth 1 (sha256 of 64 zero bytes).
    bytes32 private constant ZH1 = 0xf5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b;

    // BLS12-381 base field modulus p (48 bytes) as a 32-byte high part and a 16-byte low part.
    uint256 private constant P_HI = 0x1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f624;
    uint256 private constant P_LO = 0x1eabfffeb153ffffb9feffffffffaaab;
    // (p - 1) / 2 in the EIP-2537 word split: 16-byte high part, 32-byte low part.
    uint256 private constant HALF_HI = 0x0d0088f51cbff34d258dd3db21a5d66b;
    uint256 private constant HALF_LO = 0xb23ba5c279c2895fb39869507b587b120f55ffff58a9ffffdcff7fffffffd555;
    // -G1 generator, EIP-2537 encoded (x, p - y), same split.
    uint256 private constant NG1_X_HI = 0x17f1d3a73197d7942695638c4fa9ac0f;
    uint256 private constant NG1_X_LO = 0xc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb22c6bb;
    uint256 private constant NG1_Y_HI = 0x114d1d6855d545a8aa7d76c8cf2e21f2;
    uint256 private constant NG1_Y_LO = 0x67816aef1db507c96655b9d5caac42364e6f38ba0ecb751bad54dcd6b939c2ca;
    // DST' = "BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_" ‖ I2OSP(43, 1), 44 bytes, left-aligned.
    bytes32 private constant DST_PRIME_0 = "BLS_SIG_BLS12381G2_XMD:SHA-256_S";
    bytes32 private constant DST_PRIME_1 = 0x5357555f524f5f504f505f2b0000000000000000000000000000000000000000;

    // ------------------------------------------------------------------ state

    /// `VOTE domain type ‖ network digest ‖ 24 zero bytes`.
    bytes32 public immutable voteDomain;
    /// The latest epoch whose operator set is known.
    uint64 public currentEpoch;
    mapping(uint64 => EpochInfo) private epochs;
    /// Root of the block settled at a height (zero if none).
    mapping(uint64 => bytes32) public settledRoot;

    // ------------------------------------------------------------------ deployment

    /// @param networkDigest first 4 bytes of hash_tree_root(GenesisConfig)
    /// @param keys epoch 0's public keys, uncompressed EIP-2537 G1, 128 bytes each, in index order
    /// @param powers epoch 0's voting powers, in index order
    constructor(bytes4 networkDigest, bytes memory keys, uint64[] memory powers) {
        voteDomain = bytes32(uint256(2) << 224) | (bytes32(networkDigest) >> 32);
        uint256 n = powers.length;
        if (n == 0 || n > MAX_OPERATORS || keys.length != n * 128) revert MalformedOperatorSet();
        uint256 total;
        for (uint256 i = 0; i < n; i++) {
            total += powers[i];
        }
        if (total == 0) revert ZeroTotalPower();
        uint256 keysPtr;
        assembly ("memory-safe") {
            keysPtr := add(keys, 0x20)
        }
        _checkOnCurve(keysPtr, n);
        bytes32 commitment = keccak256(abi.encodePacked(keys, powers));
        epochs[0] = EpochInfo(commitment, uint128(total), 1, type(uint64).max);
        emit EpochStarted(0, commitment, total, 1, n, bytes32(0));
    }

    // ------------------------------------------------------------------ settlement

    /// Settles a finalized block: verifies its FINALIZE certificate against the epoch's set and
    /// records the block root at its height. Reverts if that height is already settled.
    function settle(
        Certificate calldata cert,
        OperatorKeys calldata set,
        BlockHeader calldata header,
        TaskResult[] calldata tasks
    ) external {
        EpochInfo storage ep = _epochFor(cert.epoch, header.height);
        bytes32 prior = settledRoot[header.height];
        if (prior != bytes32(0)) revert HeightAlreadySettled(header.height, prior);
        _verifyAndRecord(ep, cert, set, header.height, _blockRoot(header, tasks), tasks, true);
    }

    /// Settles the block that ends the current epoch (if not settled yet) and starts the next
    /// epoch with the set that block's post-state names. The post-state is recomputed from
    /// `post` and the header, and must hash to `header.stateRoot`; its `next_operators` must
    /// differ from its `operators` (that is what ends an epoch).
    function advanceEpoch(
        Certificate calldata cert,
        OperatorKeys calldata set,
        BlockHeader calldata header,
        TaskResult[] calldata tasks,
        PostState calldata post
    ) external {
        uint64 e = currentEpoch;
        if (cert.epoch != e) revert EpochNotCurrent(cert.epoch, e);
        EpochInfo storage ep = _epochFor(e, header.height);
        BlockRoots memory br = _blockRoot(header, tasks);
        bytes32 prior = settledRoot[header.height];
        if (prior != bytes32(0) && prior != br.root) revert HeightAlreadySettled(header.height, prior);
        NextEpoch memory nx = _checkPostState(e, header, post);
        // The epoch-ending block may already be settled through `settle` (which cannot know it
        // ends the epoch): then only the hand-over happens, and its events are not repeated.
        _verifyAndRecord(ep, cert, set, header.height, br, tasks, prior == bytes32(0));
        _startNextEpoch(ep, e, header.height, nx);
    }

    struct NextEpoch {
        bytes32 operatorSetRoot;
        bytes32 commitment;
        uint256 totalPower;
        uint256 count;
    }

    /// Recomputes hash_tree_root(ChainState) of the epoch-ending block's post-state from the
    /// next set and the given roots, and checks it against the header's state root and that
    /// the set changes.
    function _checkPostState(uint64 epoch, BlockHeader calldata header, PostState calldata post)
        private
        view
        returns (NextEpoch memory nx)
    {
        (nx.operatorSetRoot, nx.commitment, nx.totalPower) = _nextOperatorSet(post.nextOperators);
        nx.count = post.nextOperators.length;
        if (nx.operatorSetRoot == post.operatorsRoot) revert NotEpochEnding();
        bytes32 stateRoot = _chainStateRoot(epoch, header, post.operatorsRoot, nx.operatorSetRoot, post.taskStatesRoot);
        if (stateRoot != header.stateRoot) revert StateRootMismatch(stateRoot, header.stateRoot);
    }

    function _startNextEpoch(EpochInfo storage ep, uint64 e, uint64 endHeight, NextEpoch memory nx) private {
        ep.lastHeight = endHeight;
        uint64 next = e + 1;
        uint64 firstHeight = endHeight + 1;
        epochs[next] = EpochInfo(nx.commitment, uint128(nx.totalPower), firstHeight, type(uint64).max);
        currentEpoch = next;
        emit EpochStarted(next, nx.commitment, nx.totalPower, firstHeight, nx.count, nx.operatorSetRoot);
    }

    // ------------------------------------------------------------------ views for clients

    function epochInfo(uint64 epoch)
        external
        view
        returns (bytes32 commitment, uint256 totalPower, uint64 firstHeight, uint64 lastHeight)
    {
        if (epoch > currentEpoch) revert EpochUnknown(epoch, currentEpoch);
        EpochInfo storage ep = epochs[epoch];
        return (ep.commitment, ep.totalPower, ep.firstHeight, ep.lastHeight);
    }

    /// keccak256(keys ‖ each power as a 32-byte big-endian word) = keccak256(abi.encodePacked(keys, powers)).
    function operatorSetCommitment(bytes calldata keys, uint64[] calldata powers) public pure returns (bytes32) {
        return keccak256(abi.encodePacked(keys, powers));
    }

    /// hash_tree_root(Block) and each TaskResult's root, as `settle` computes them.
    function computeBlockRoot(BlockHeader calldata header, TaskResult[] calldata tasks)
        external
        view
        returns (bytes32 root, bytes32[] memory taskRoots)
    {
        BlockRoots memory br = _blockRoot(header, tasks);
        return (br.root, br.taskRoots);
    }

    /// The protocol task ids (TaskMessage roots) of a block's task results, performers' keys
    /// taken from `set` (not checked against any commitment here).
    function computeTaskIds(OperatorKeys calldata set, TaskResult[] calldata tasks)
        external
        view
        returns (bytes32[] memory taskIds)
    {
        taskIds = new bytes32[](tasks.length);
        for (uint256 i = 0; i < tasks.length; i++) {
            taskIds[i] = _taskId(set.keys, tasks[i], _messageHalf(tasks[i], i));
        }
    }

    /// The signing root of FINALIZE(epoch, view, blockRoot) on this network.
    function computeSigningRoot(uint64 viewNumber, uint64 epoch, bytes32 blockRoot) external view returns (bytes32) {
        return _signingRoot(viewNumber, epoch, blockRoot);
    }

    /// hash_to_curve G2 of a 32-byte message under the signature DST, EIP-2537 encoded.
    function hashToG2(bytes32 message) external view returns (bytes memory point) {
        point = new bytes(256);
        uint256 out;
        assembly ("memory-safe") {
            out := add(point, 0x20)
        }
        _hashToG2(message, out);
    }

    /// hash_tree_root(OperatorSet), commitment and total power of a next set, with every check
    /// `advanceEpoch` makes on it.
    function computeOperatorSet(NextOperator[] calldata ops)
        external
        view
        returns (bytes32 root, bytes32 commitment, uint256 totalPower)
    {
        return _nextOperatorSet(ops);
    }

    // ------------------------------------------------------------------ certificate check

    function _epochFor(uint64 epoch, uint64 height) private view returns (EpochInfo storage ep) {
        if (epoch > currentEpoch) revert EpochUnknown(epoch, currentEpoch);
        ep = epochs[epoch];
        if (height < ep.firstHeight || height > ep.lastHeight) {
            revert HeightOutsideEpoch(height, epoch, ep.firstHeight, ep.lastHeight);
        }
    }

    /// Checks the set against the epoch's commitment, the signers' quorum and the aggregate
    /// signature over the FINALIZE signing root of `blockRoot`; returns the signed power.
    function _verifyCertificate(
        EpochInfo storage ep,
        Certificate calldata cert,
        OperatorKeys calldata set,
        bytes32 blockRoot
    ) private view returns (uint256 signed) {
        uint256 n = set.powers.length;
        if (set.keys.length != n * 128) revert MalformedOperatorSet();
        bytes32 given = keccak256(abi.encodePacked(set.keys, set.powers));
        if (given != ep.commitment) revert OperatorSetMismatch(given, ep.commitment);
        if (cert.signature.length != 256) revert MalformedSignature();

        // Pairing input: aggPk (128) ‖ H(m) (256) ‖ -g1 (128) ‖ signature (256).
        uint256 buf;
        assembly ("memory-safe") {
            buf := mload(0x40)
            mstore(0x40, add(buf, 768))
        }
        signed = _aggregate(cert.signers, set.keys, set.powers, buf);
        uint256 total = ep.totalPower;
        if (3 * signed <= 2 * total) revert QuorumNotReached(signed, total);

        _hashToG2(_signingRoot(cert.viewNumber, cert.epoch, blockRoot), buf + 128);
        bytes calldata sig = cert.signature;
        bool ok;
        assembly ("memory-safe") {
            mstore(add(buf, 384), NG1_X_HI)
            mstore(add(buf, 416), NG1_X_LO)
            mstore(add(buf, 448), NG1_Y_HI)
            mstore(add(buf, 480), NG1_Y_LO)
            calldatacopy(add(buf, 512), sig.offset, 256)
            mstore(0x00, 0)
            let success := staticcall(gas(), 0x0f, buf, 768, 0x00, 0x20)
            ok := and(success, eq(mload(0x00), 1))
        }
        // A failing PAIRING_CHECK call means an input is not a valid subgroup point: the
        // signature (the keys are committed and the aggregate is their sum).
        if (!ok) revert InvalidSignature();
    }

    /// Sums the signers' power and keys. Keys are summed with G1ADD, which checks each input
    /// is on the curve but not in the subgroup: they come from the committed set, whose keys
    /// the protocol admitted (subgroup, PoP) and which `advanceEpoch` ties to those compressed
    /// keys; the sum is subgroup-checked again by PAIRING_CHECK. Writes the aggregate key at
    /// `buf` (128 bytes) using `buf + 128 .. + 256` as scratch.
    function _aggregate(bytes calldata signers, bytes calldata keys, uint64[] calldata powers, uint256 buf)
        private
        view
        returns (uint256 signed)
    {
        uint256 n = powers.length;
        uint256 len = signers.length;
        if (len == 0) revert MalformedSigners();
        uint256 last = uint8(signers[len - 1]);
        if (last == 0) revert MalformedSigners();
        uint256 msb = 0;
        while (last > 1) {
            last >>= 1;
            msb++;
        }
        uint256 bits = (len - 1) * 8 + msb;
        if (bits != n) revert SignersLengthMismatch(bits, n);

        bool any = false;
        for (uint256 i = 0; i < n; i++) {
            if ((uint8(signers[i >> 3]) >> (i & 7)) & 1 == 0) continue;
            signed += powers[i];
            bool ok = true;
            assembly ("memory-safe") {
                let src := add(keys.offset, mul(i, 128))
                switch any
                case 0 { calldatacopy(buf, src, 128) }
                default {
                    calldatacopy(add(buf, 128), src, 128)
                    ok := staticcall(gas(), 0x0b, buf, 256, buf, 128)
                }
            }
            if (!ok) revert PrecompileFailed(0x0b);
            any = true;
        }
        if (!any) {
            assembly ("memory-safe") {
                calldatacopy(buf, calldatasize(), 128) // zeros: the point at infinity
            }
        }
    }

    function _signingRoot(uint64 viewNumber, uint64 epoch, bytes32 blockRoot) private view returns (bytes32) {
        bytes32 voteDataRoot = _sha(
            _sha(bytes32(uint256(FINALIZE) << 248), _le64(viewNumber)), _sha(_le64(epoch), blockRoot)
        );
        return _sha(voteDataRoot, voteDomain);
    }

    // ------------------------------------------------------------------ recording

    function _verifyAndRecord(
        EpochInfo storage ep,
        Certificate calldata cert,
        OperatorKeys calldata set,
        uint64 height,
        BlockRoots memory br,
        TaskResult[] calldata tasks,
        bool record
    ) private {
        uint256 signed = _verifyCertificate(ep, cert, set, br.root);
        if (!record) return;
        Settled memory s = _settled(br, height, signed, ep.totalPower, set.keys, tasks);
        _record(cert, s, tasks);
    }

    function _settled(
        BlockRoots memory br,
        uint64 height,
        uint256 signed,
        uint256 total,
        bytes calldata keys,
        TaskResult[] calldata tasks
    ) private view returns (Settled memory s) {
        s.root = br.root;
        s.height = height;
        s.signedPower = signed;
        s.totalPower = total;
        s.taskRoots = br.taskRoots;
        s.taskIds = new bytes32[](tasks.length);
        for (uint256 i = 0; i < tasks.length; i++) {
            s.taskIds[i] = _taskId(keys, tasks[i], br.messageHalves[i]);
        }
    }

    function _record(Certificate calldata cert, Settled memory s, TaskResult[] calldata tasks) private {
        settledRoot[s.height] = s.root;
        for (uint256 i = 0; i < tasks.length; i++) {
            emit TaskResultSettled(
                s.taskIds[i], s.root, tasks[i].taskDefinitionId, s.taskRoots[i], s.height, i, tasks[i].performerIndex
            );
        }
        emit BlockSettled(s.root, s.height, cert.epoch, cert.viewNumber, s.signedPower, s.totalPower, tasks.length);
    }

    /// hash_tree_root(TaskMessage{id, performer key compressed, proof_of_task, data}); the key
    /// is compressed from the set's uncompressed key (x with flags 0b100 and the sign bit set
    /// iff y > (p - 1) / 2). Zero if `performerIndex` is outside the set.
    function _taskId(bytes calldata keys, TaskResult calldata t, bytes32 messageHalf) private view returns (bytes32) {
        uint256 index = t.performerIndex;
        if (index >= keys.length / 128) return bytes32(0);
        bytes32 c0;
        bytes32 c1;
        assembly ("memory-safe") {
            let k := add(keys.offset, mul(index, 128))
            let x0 := calldataload(add(k, 16))
            let x1 := and(calldataload(add(k, 48)), shl(128, not(0)))
            let yHi := shr(128, calldataload(add(k, 80)))
            let yLo := calldataload(add(k, 96))
            let larger := or(gt(yHi, HALF_HI), and(eq(yHi, HALF_HI), gt(yLo, HALF_LO)))
            c0 := or(x0, shl(253, or(4, larger)))
            c1 := x1
        }
        return _sha(_sha(_le16(t.taskDefinitionId), _sha(c0, c1)), messageHalf);
    }

    // ------------------------------------------------------------------ SSZ

    function _blockRoot(BlockHeader calldata h, TaskResult[] calldata tasks)
        private
        view
        returns (BlockRoots memory br)
    {
        uint256 n = tasks.length;
        if (n > MAX_TASKS_PER_BLOCK) revert TooManyTasks(n);
        bytes32[] memory taskRoots = new bytes32[](n);
        br.messageHalves = new bytes32[](n);
        for (uint256 i = 0; i < n; i++) {
            bytes32 half = _messageHalf(tasks[i], i);
            br.messageHalves[i] = half;
            taskRoots[i] = _taskResultRoot(tasks[i], half);
        }
        br.taskRoots = taskRoots;
        // List[TaskResult, 16]: merkleize a copy (in place destroys it) to depth 4, mix in length.
        uint256 ptr;
        assembly ("memory-safe") {
            ptr := mload(0x40)
            for { let i := 0 } lt(i, n) { i := add(i, 1) } {
                mstore(add(ptr, shl(5, i)), mload(add(add(taskRoots, 0x20), shl(5, i))))
            }
        }
        bytes32 bodyRoot = _sha(_merkleize(ptr, n, 4), _le64(uint64(n))); // BlockBody has one field
        br.root = _sha(
            _sha(_sha(_le64(h.height), h.parentRoot), _sha(_le64(h.proposerIndex), h.stateRoot)),
            _sha(_sha(bodyRoot, bytes32(0)), ZH1)
        );
    }

    /// sha256(root(proof_of_task) ‖ root(data)): the same subtree in the TaskResult and in
    /// the TaskMessage, so it is computed once. Checks the lengths.
    function _messageHalf(TaskResult calldata t, uint256 index) private view returns (bytes32) {
        if (
            t.proofOfTask.length > MAX_PROOF_BYTES || t.data.length > MAX_TASK_DATA_BYTES
                || t.signature.length != 96
        ) revert MalformedTaskResult(index);
        return _sha(_byteListRoot(t.proofOfTask, 11), _byteListRoot(t.data, 14));
    }

    /// TaskResult root: leaves id, performer, proof, data, signature, 0, 0, 0.
    function _taskResultRoot(TaskResult calldata t, bytes32 messageHalf) private view returns (bytes32) {
        bytes32 a = _sha(_le16(t.taskDefinitionId), _le64(t.performerIndex));
        bytes32 c = _sha(_sha(_vector96Root(t.signature), bytes32(0)), ZH1);
        return _sha(_sha(a, messageHalf), c);
    }

    function _chainStateRoot(
        uint64 epoch,
        BlockHeader calldata h,
        bytes32 operatorsRoot,
        bytes32 nextOperatorsRoot,
        bytes32 taskStatesRoot
    ) private view returns (bytes32) {
        return _sha(
            _sha(_sha(_le64(epoch), _le64(h.height)), _sha(h.parentRoot, operatorsRoot)),
            _sha(_sha(nextOperatorsRoot, taskStatesRoot), ZH1)
        );
    }

    /// Checks each next operator (compressed and uncompressed key agree; lengths), and returns
    /// hash_tree_root(OperatorSet), the commitment to its uncompressed keys and powers, and the
    /// total power.
    function _nextOperatorSet(NextOperator[] calldata ops)
        private
        view
        returns (bytes32 root, bytes32 commitment, uint256 total)
    {
        uint256 n = ops.length;
        if (n == 0 || n > MAX_OPERATORS) revert MalformedOperatorSet();
        bytes32[] memory roots = new bytes32[](n + 1); // one spare slot for odd-level padding
        bytes memory packed = new bytes(n * 160); // keys ‖ powers, as the commitment hashes them
        for (uint256 i = 0; i < n; i++) {
            NextOperator calldata o = ops[i];
            _checkKey(o.pubkey, o.pubkeyG1, i);
            if (o.pop.length != 96) revert MalformedNextOperator(i);
            roots[i] = _sha(
                _sha(bytes32(o.addr), _pubkeyRoot(o.pubkey)), _sha(_vector96Root(o.pop), _le64(o.power))
            );
            bytes calldata g1 = o.pubkeyG1;
            uint256 power = o.power;
            assembly ("memory-safe") {
                calldatacopy(add(add(packed, 0x20), mul(i, 128)), g1.offset, 128)
                mstore(add(add(packed, 0x20), add(mul(n, 128), mul(i, 32))), power)
            }
            total += power;
        }
        if (total == 0) revert ZeroTotalPower();
        uint256 keysPtr;
        uint256 rootsPtr;
        assembly ("memory-safe") {
            keysPtr := add(packed, 0x20)
            rootsPtr := add(roots, 0x20)
        }
        _checkOnCurve(keysPtr, n);
        commitment = keccak256(packed);
        root = _sha(_merkleize(rootsPtr, n, 10), _le64(uint64(n))); // OperatorSet has one field
    }

    /// The uncompressed key must be the compressed key decompressed: same x, compression flag
    /// set, infinity flag clear, sign flag set iff y > (p - 1) / 2 (y is the larger of y, p - y).
    /// That the point is on the curve is checked by `_checkOnCurve`; with x and the sign fixed,
    /// that leaves one point, the decompression of `pubkey`.
    function _checkKey(bytes calldata pubkey, bytes calldata g1, uint256 index) private pure {
        if (pubkey.length != 48 || g1.length != 128) revert MalformedNextOperator(index);
        bool ok;
        assembly ("memory-safe") {
            let c0 := calldataload(pubkey.offset)
            let c1 := shr(128, calldataload(add(pubkey.offset, 32)))
            let compressed := shr(255, c0)
            let infinity := and(shr(254, c0), 1)
            let sign := and(shr(253, c0), 1)
            let x0 := and(c0, shr(3, not(0)))
            let padX := shr(128, calldataload(g1.offset))
            let padY := shr(128, calldataload(add(g1.offset, 64)))
            let ux0 := calldataload(add(g1.offset, 16))
            let ux1 := shr(128, calldataload(add(g1.offset, 48)))
            let yHi := shr(128, calldataload(add(g1.offset, 80)))
            let yLo := calldataload(add(g1.offset, 96))
            let larger := or(gt(yHi, HALF_HI), and(eq(yHi, HALF_HI), gt(yLo, HALF_LO)))
            ok := and(and(eq(compressed, 1), iszero(infinity)), and(iszero(or(padX, padY)), eq(sign, larger)))
            ok := and(ok, and(eq(x0, ux0), eq(c1, ux1)))
        }
        if (!ok) revert NextKeyMismatch(index);
    }

    /// G1ADD checks that its inputs are valid field elements and on the curve (no subgroup
    /// check); chaining it over the keys checks every key.
    function _checkOnCurve(uint256 keysPtr, uint256 n) private view {
        bool ok = true;
        assembly ("memory-safe") {
            let buf := mload(0x40)
            // acc := key 0; acc := acc + key i. With one key: key 0 + infinity.
            mstore(buf, mload(keysPtr))
            mstore(add(buf, 32), mload(add(keysPtr, 32)))
            mstore(add(buf, 64), mload(add(keysPtr, 64)))
            mstore(add(buf, 96), mload(add(keysPtr, 96)))
            switch n
            case 1 {
                mstore(add(buf, 128), 0)
                mstore(add(buf, 160), 0)
                mstore(add(buf, 192), 0)
                mstore(add(buf, 224), 0)
                ok := staticcall(gas(), 0x0b, buf, 256, buf, 128)
            }
            default {
                for { let i := 1 } and(ok, lt(i, n)) { i := add(i, 1) } {
                    let k := add(keysPtr, mul(i, 128))
                    mstore(add(buf, 128), mload(k))
                    mstore(add(buf, 160), mload(add(k, 32)))
                    mstore(add(buf, 192), mload(add(k, 64)))
                    mstore(add(buf, 224), mload(add(k, 96)))
                    ok := staticcall(gas(), 0x0b, buf, 256, buf, 128)
                }
            }
        }
        if (!ok) revert PrecompileFailed(0x0b);
    }

    /// ByteList[limit] root with 2^depth chunks: pack, zero-pad to the limit, mix in length.
    function _byteListRoot(bytes calldata b, uint256 depth) private view returns (bytes32) {
        uint256 ptr;
        uint256 chunks;
        assembly ("memory-safe") {
            ptr := mload(0x40)
            let len := b.length
            chunks := shr(5, add(len, 31))
            if chunks { mstore(add(ptr, shl(5, sub(chunks, 1))), 0) }
            calldatacopy(ptr, b.offset, len)
        }
        return _sha(_merkleize(ptr, chunks, depth), _le64(uint64(b.length)));
    }

    /// ByteVector[96] root: three chunks, padded to four.
    function _vector96Root(bytes calldata v) private view returns (bytes32) {
        bytes32 c0;
        bytes32 c1;
        bytes32 c2;
        assembly ("memory-safe") {
            c0 := calldataload(v.offset)
            c1 := calldataload(add(v.offset, 32))
            c2 := calldataload(add(v.offset, 64))
        }
        return _sha(_sha(c0, c1), _sha(c2, bytes32(0)));
    }

    /// ByteVector[48] root: two chunks, the second right-padded with zeros.
    function _pubkeyRoot(bytes calldata v) private view returns (bytes32) {
        bytes32 c0;
        bytes32 c1;
        assembly ("memory-safe") {
            c0 := calldataload(v.offset)
            c1 := and(calldataload(add(v.offset, 32)), shl(128, not(0)))
        }
        return _sha(c0, c1);
    }

    /// Merkleizes `count` 32-byte chunks at `ptr` in place to depth `depth` (count <= 2^depth),
    /// padding with zero-subtree roots. Writes up to one chunk past the data; the caller's
    /// buffer (scratch past the free-memory pointer, or an array with a spare slot) allows it.
    function _merkleize(uint256 ptr, uint256 count, uint256 depth) private view returns (bytes32 root) {
        assembly ("memory-safe") {
            function zh(level) -> z {
                switch level
                case 0 { z := 0 }
                case 1 { z := 0xf5a5fd42d16a20302798ef6ed309979b43003d2320d9f0e8ea9831a92759fb4b }
                case 2 { z := 0xdb56114e00fdd4c1f85c892bf35ac9a89289aaecb1ebd0a96cde606a748b5d71 }
                case 3 { z := 0xc78009fdf07fc56a11f122370658a353aaa542ed63e44c4bc15ff4cd105ab33c }
                case 4 { z := 0x536d98837f2dd165a55d5eeae91485954472d56f246df256bf3cae19352a123c }
                case 5 { z := 0x9efde052aa15429fae05bad4d0b1d7c64da64d03d7a1854a588c2cb8430c0d30 }
                case 6 { z := 0xd88ddfeed400a8755596b21942c1497e114c302e6118290f91e6772976041fa1 }
                case 7 { z := 0x87eb0ddba57e35f6d286673802a4af5975e22506c7cf4c64bb6be5ee11527f2c }
                case 8 { z := 0x26846476fd5fc54a5d43385167c95144f2643f533cc85bb9d16b782f8d7db193 }
                case 9 { z := 0x506d86582d252405b840018792cad2bf1259f1ef5aa5f887e13cb2f0094f51e1 }
                case 10 { z := 0xffff0ad7e659772f9534c195c815efc4014ef1e1daed4404c06385d11192e92b }
                case 11 { z := 0x6cf04127db05441cd833107a52be852868890e4317e6a02ab47683aa75964220 }
                case 12 { z := 0xb7d05f875f140027ef5118a2247bbb84ce8f2f0f1123623085daf7960c329f5f }
                case 13 { z := 0xdf6af5f5bbdb6be9ef8aa618e4bf8073960867171e29676f8b284dea6a08a85e }
                case 14 { z := 0xb58d900f5e182e3c50ef74969ea16c7726c549757cc23523c369587da7293784 }
                default { revert(0, 0) }
            }
            switch count
            case 0 { root := zh(depth) }
            default {
                for { let level := 0 } lt(level, depth) { level := add(level, 1) } {
                    if and(count, 1) {
                        mstore(add(ptr, shl(5, count)), zh(level))
                        count := add(count, 1)
                    }
                    let half := shr(1, count)
                    for { let i := 0 } lt(i, half) { i := add(i, 1) } {
                        if iszero(staticcall(gas(), 0x02, add(ptr, shl(6, i)), 0x40, add(ptr, shl(5, i)), 0x20)) {
                            revert(0, 0)
                        }
                    }
                    count := half
                }
                root := mload(ptr)
            }
        }
    }

    function _sha(bytes32 a, bytes32 b) private view returns (bytes32 r) {
        assembly ("memory-safe") {
            mstore(0x00, a)
            mstore(0x20, b)
            if iszero(staticcall(gas(), 0x02, 0x00, 0x40, 0x00, 0x20)) { revert(0, 0) }
            r := mload(0x00)
        }
    }

    /// SSZ uint64 chunk: little-endian in the first 8 bytes.
    function _le64(uint64 v) private pure returns (bytes32) {
        uint256 x = v;
        x = ((x & 0xFF00FF00FF00FF00) >> 8) | ((x & 0x00FF00FF00FF00FF) << 8);
        x = ((x & 0xFFFF0000FFFF0000) >> 16) | ((x & 0x0000FFFF0000FFFF) << 16);
        x = ((x & 0xFFFFFFFF00000000) >> 32) | ((x & 0x00000000FFFFFFFF) << 32);
        return bytes32(x << 192);
    }

    /// SSZ uint16 chunk.
    function _le16(uint16 v) private pure returns (bytes32) {
        uint256 x = v;
        return bytes32((((x & 0xFF) << 8) | (x >> 8)) << 240);
    }

    // ------------------------------------------------------------------ hash to curve (RFC 9380)

    /// hash_to_curve for BLS12381G2_XMD:SHA-256_SSWU_RO_ with the signature DST, of a 32-byte
    /// message; writes the EIP-2537 G2 point (256 bytes) at `out`. expand_message_xmd gives 256
    /// uniform bytes; four 64-byte slices reduced mod p (MODEXP with exponent 1) are u0 and
    /// u1 in Fp2; MAP_FP2_TO_G2 maps each (SSWU, 3-isogeny and cofactor clearing) and G2ADD
    /// sums them (clearing the cofactor of the sum or summing the cleared points is the same,
    /// clear_cofactor being a group homomorphism). Uses scratch memory past the free pointer.
    function _hashToG2(bytes32 message, uint256 out) private view {
        bool ok = true;
        assembly ("memory-safe") {
            let base := mload(0x40)
            let q := add(base, 0x100) // b_i input: 32 ‖ 1 ‖ DST' (77 bytes)
            let u := add(base, 0x180) // uniform bytes b_1 .. b_8 (256)
            let m := add(base, 0x280) // MODEXP input (209)
            let f := add(base, 0x380) // u0, u1 as EIP-2537 Fp2 (256)
            let pts := add(base, 0x480) // map(u0) ‖ map(u1) (512)

            // msg' = Z_pad(64) ‖ msg ‖ I2OSP(256, 2) ‖ I2OSP(0, 1) ‖ DST'  (143 bytes)
            mstore(base, 0)
            mstore(add(base, 0x20), 0)
            mstore(add(base, 0x40), message)
            mstore8(add(base, 0x60), 0x01)
            mstore8(add(base, 0x61), 0x00)
            mstore8(add(base, 0x62), 0x00)
            mstore(add(base, 0x63), DST_PRIME_0)
            mstore(add(base, 0x83), DST_PRIME_1)
            ok := and(ok, staticcall(gas(), 0x02, base, 143, 0x00, 0x20))
            let b0 := mload(0x00)

            mstore(add(q, 33), DST_PRIME_0)
            mstore(add(q, 65), DST_PRIME_1)
            let prev := 0
            for { let i := 1 } lt(i, 9) { i := add(i, 1) } {
                mstore(q, xor(b0, prev)) // b_1 = H(b0 ‖ 1 ‖ DST'); b_i = H((b0 ^ b_{i-1}) ‖ i ‖ DST')
                mstore8(add(q, 32), i)
                let dst := add(u, shl(5, sub(i, 1)))
                ok := and(ok, staticcall(gas(), 0x02, q, 77, dst, 0x20))
                prev := mload(dst)
            }

            // e_k = OS2IP(uniform[64k .. 64k+64]) mod p via MODEXP(base, 1, p).
            mstore(m, 64)
            mstore(add(m, 0x20), 1)
            mstore(add(m, 0x40), 48)
            mstore8(add(m, 0xa0), 1)
            mstore(add(m, 0xa1), P_HI)
            mstore(add(m, 0xc1), shl(128, P_LO))
            for { let k := 0 } lt(k, 4) { k := add(k, 1) } {
                mstore(add(m, 0x60), mload(add(u, shl(6, k))))
                mstore(add(m, 0x80), mload(add(add(u, shl(6, k)), 0x20)))
                let e := add(f, shl(6, k))
                mstore(e, 0)
                ok := and(ok, staticcall(gas(), 0x05, m, 209, add(e, 16), 48))
            }

            ok := and(ok, staticcall(gas(), 0x11, f, 128, pts, 256))
            ok := and(ok, staticcall(gas(), 0x11, add(f, 128), 128, add(pts, 256), 256))
            ok := and(ok, staticcall(gas(), 0x0d, pts, 512, out, 256))
        }
        if (!ok) revert PrecompileFailed(0x11);
    }
}
