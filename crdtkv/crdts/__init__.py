"""The value types of crdtkv: pure CRDTs, one module each (see ``base``)."""

from crdtkv.crdts.base import CRDT
from crdtkv.crdts.causal import CausalContext, Dot, Order, VersionVector
from crdtkv.crdts.codec import decode, encode, pack, unpack
from crdtkv.crdts.hlc import HLC, ZERO, Timestamp
from crdtkv.crdts.hll import HLL
from crdtkv.crdts.key_meta import KeyMeta
from crdtkv.crdts.lww_register import LWWRegister
from crdtkv.crdts.numeric import NumericRegister
from crdtkv.crdts.or_map import ORMap
from crdtkv.crdts.or_set import ORSet
from crdtkv.crdts.pn_counter import PNCounter
from crdtkv.crdts.rlist import RList
from crdtkv.crdts.vset import VSet
from crdtkv.crdts.zset import LexBound, ScoreBound, ZSet

__all__ = [
    "CRDT",
    "HLC",
    "HLL",
    "ZERO",
    "CausalContext",
    "Dot",
    "KeyMeta",
    "LWWRegister",
    "LexBound",
    "NumericRegister",
    "ORMap",
    "ORSet",
    "Order",
    "PNCounter",
    "RList",
    "ScoreBound",
    "Timestamp",
    "VSet",
    "VersionVector",
    "ZSet",
    "decode",
    "encode",
    "pack",
    "unpack",
]
