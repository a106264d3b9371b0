// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity 0.8.26;

/// L2 record of operators' voting power, read by avs-node's VotingPowerSyncTask (id 10001)
/// at explicit block numbers. The owner (in production, the relayer of certified updates)
/// writes it.
contract PowerRegistry {
    address public immutable owner;
    address[] private addresses;
    mapping(address => uint64) private recorded;
    mapping(address => bool) private known;

    event PowerRecorded(address indexed operator, uint64 power);

    constructor() {
        owner = msg.sender;
    }

    function setPower(address operator, uint64 power) external {
        require(msg.sender == owner, "not the owner");
        if (!known[operator]) {
            known[operator] = true;
            addresses.push(operator);
        }
        recorded[operator] = power;
        emit PowerRecorded(operator, power);
    }

    /// Every operator ever recorded, with its current recorded power.
    function powers() external view returns (address[] memory ops, uint64[] memory values) {
        uint256 n = addresses.length;
        ops = new address[](n);
        values = new uint64[](n);
        for (uint256 i = 0; i < n; i++) {
            ops[i] = addresses[i];
            values[i] = recorded[addresses[i]];
        }
    }
}
