// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.26;

/// L1 stake registry read by avs-node's VotingPowerSyncTask (id 10001): the stake truth.
/// An operator registers its address with a BLS12-381 public key (48 bytes, compressed G1)
/// and a proof of possession (96 bytes, compressed G2); the owner sets its power. Nodes read
/// `operators()` at explicit block numbers, so every attester sees the same answer.
contract StakeRegistry {
    struct Registration {
        bytes pubkey;
        bytes pop;
        uint64 power;
        bool known;
    }

    address public immutable owner;
    address[] private addresses;
    mapping(address => Registration) private registrations;

    event Registered(address indexed operator, uint64 power);
    event PowerSet(address indexed operator, uint64 power);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "not the owner");
        _;
    }

    function register(address operator, bytes calldata pubkey, bytes calldata pop, uint64 power)
        external
        onlyOwner
    {
        require(pubkey.length == 48, "pubkey must be 48 bytes");
        require(pop.length == 96, "pop must be 96 bytes");
        require(!registrations[operator].known, "already registered");
        registrations[operator] = Registration(pubkey, pop, power, true);
        addresses.push(operator);
        emit Registered(operator, power);
    }

    function setPower(address operator, uint64 power) external onlyOwner {
        require(registrations[operator].known, "not registered");
        registrations[operator].power = power;
        emit PowerSet(operator, power);
    }

    /// Every registered operator, in registration order, with key, proof and power.
    function operators()
        external
        view
        returns (address[] memory ops, bytes[] memory pubkeys, bytes[] memory pops, uint64[] memory powers)
    {
        uint256 n = addresses.length;
        ops = new address[](n);
        pubkeys = new bytes[](n);
        pops = new bytes[](n);
        powers = new uint64[](n);
        for (uint256 i = 0; i < n; i++) {
            Registration storage r = registrations[addresses[i]];
            ops[i] = addresses[i];
            pubkeys[i] = r.pubkey;
            pops[i] = r.pop;
            powers[i] = r.power;
        }
    }
}
