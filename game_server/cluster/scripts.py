"""Lua scripts that more than one part of the cluster runs, each on a key naming a process."""

from __future__ import annotations

# KEYS: a key naming a process (owner:{player}, room:{code}). ARGV: this process. Deletes
# the key if it names this process: 1, else 0 (another took it over meanwhile).
DELETE_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: a key naming a process. ARGV: this process, the prefix of process keys. The live
# process the key names, other than this one; nil if none. Reads only (``node.py``'s
# LOCATE claims a player nobody owns; a look-up for a friend must not).
LIVE_OTHER = """
local node = redis.call('GET', KEYS[1])
if node and node ~= ARGV[1] and redis.call('EXISTS', ARGV[2] .. node) == 1 then
  return node
end
return false
"""
