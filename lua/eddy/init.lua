--- eddy: an event log in SQLite, for Lua.
--
-- `local eddy = require "eddy"` gives this module.  Its native half is the
-- C module `eddy.core` (runtime/leddy.c, runtime/llog.c); this file is the
-- Lua half, where the app-facing pieces (consumers, permanent handlers,
-- sagas ...) are added.
--
-- Conventions: misuse (a wrong type, a missing field) raises an error;
-- a failure a caller must expect (an unknown topic, a busy store) returns
-- `nil, message`, where the message names the thing and the reason.
--
-- @module eddy
-- @usage
-- local eddy = require "eddy"
-- local log <close> = assert(eddy.open{ data = "./data" })
-- assert(log:topic_ensure("orders", 3))
-- local partition, offset, id = assert(log:produce("orders", {
--   key = "customer-42", value = '{"total": 10}',
--   headers = { { "content-type", "application/json" } },
-- }))

local core = require "eddy.core"

local M = {}

--- The version of eddy, e.g. `"0.1.0-dev"`.
-- @field _VERSION
M._VERSION = core._VERSION

--- Opens (by default creating) the store in a data directory.
-- @function open
-- @tparam table opts
-- @tparam[opt="./data"] string opts.data the data directory; the store is
--   the file `eddy.db` in it
-- @tparam[opt=true] boolean opts.create create the directory and the store
--   when they are missing
-- @tparam[opt] integer opts.lock_timeout how long, in milliseconds (>= 1),
--   a write waits for another process to release the store's lock before
--   failing; 10000 when absent
-- @treturn log the open log
-- @return or `nil, message` when the store cannot be opened, e.g.
--   `"no eddy store in 'x'"`, `"'x/eddy.db' is not an eddy store (...)"`
-- @raise when opts is not a table or a field has the wrong type
M.open = core.open

--- A new message id: a UUIDv7 in canonical lower-case text.
-- Ids made by one process sort in the order they were made.
-- @function uuid
-- @treturn string
M.uuid = core.uuid

--- The partition Kafka's default partitioner gives a message with this key:
-- `(murmur2(key) & 0x7fffffff) % partitions`, as the Java producer does it.
-- @function partition_for
-- @tparam string key
-- @tparam integer partitions the topic's partition count, >= 1
-- @treturn integer the partition, from 0
-- @raise when key is not a string or partitions not a positive integer
M.partition_for = core.partition_for

--- The versions of eddy and of the libraries it runs on.
-- @function versions
-- @treturn table `{ eddy =, lua =, sqlite =, librdkafka =, libuv = }`, all
--   strings
M.versions = core.versions

--- An open event log: one connection to a store.
--
-- Every method raises `"attempt to use a closed eddy log"` once the log is
-- closed, except `close` and `tostring(log)` (`"eddy.log (DIR)"`, or
-- `"eddy.log (closed)"`).  A log also closes as a `<close>` variable and
-- when it is collected.
-- @type log

--- Closes the log.  Idempotent.
-- @function log:close
-- @treturn boolean true

--- Creates a topic.
-- @function log:topic_create
-- @tparam string name 1 to 249 characters of `[A-Za-z0-9._-]`
-- @tparam integer partitions 1 to 4096
-- @tparam[opt] table opts `{ retention_ms =, retention_bytes =,
--   max_message_bytes = }`, integers; retention -1 (the default) keeps
--   messages forever; retention_bytes is per partition;
--   max_message_bytes (default 1 MiB) limits the key, the value and the
--   headers of a message each
-- @treturn boolean true
-- @return or `nil, message`, e.g. `"topic 'x' already exists"`,
--   `"topic 'x': partition count must be between 1 and 4096, got 0"`
-- @raise when partitions or an option is not an integer

--- Creates a topic unless it exists.  An existing topic keeps its
-- configuration; it fails only when it has fewer partitions than asked.
-- @function log:topic_ensure
-- @tparam string name
-- @tparam integer partitions
-- @tparam[opt] table opts as for `topic_create`
-- @treturn boolean true
-- @treturn boolean whether the topic was created now
-- @return or `nil, message`

--- The topics, in name order.
-- @function log:topics
-- @treturn {table,...} `{ name =, partitions =, retention_ms =,
--   retention_bytes =, max_message_bytes =, messages =, created_at = }`
--   each; messages is the number stored now over all partitions,
--   created_at is in milliseconds since the epoch
-- @return or `nil, message`

--- One topic.
-- @function log:topic
-- @tparam string name
-- @treturn table what `topics` has for it, plus `offsets`, an array of
--   `{ partition =, log_start =, next_offset = }` by partition
-- @return or `nil, "unknown topic 'x'"`

--- Appends a message to a topic.
--
-- Headers may be an array of `{ name, value }` pairs (kept in order; names
-- may repeat), a map `{ name = value }` (stored sorted by name), or both
-- (the pairs first).  Names and values are strings.
-- @function log:produce
-- @tparam string topic
-- @tparam table msg `{ value = string, key = string|nil, headers =,
--   id = string|nil, partition = integer|nil, timestamp = integer|nil }`;
--   without an id the message gets a new UUIDv7; without a partition a
--   keyed message goes where `partition_for` says and an unkeyed one round
--   robin; timestamp is in milliseconds, now when absent or 0
-- @treturn integer partition
-- @treturn integer offset
-- @treturn string id
-- @return or `nil, message` (unknown topic, no such partition, over the
--   size limit, a bad id, a busy store)
-- @raise when msg is not a table or a field has the wrong type
--   (e.g. `"value must be a string"`)

--- Appends messages to a topic in one transaction: all of them or none.
-- @function log:produce_batch
-- @tparam string topic
-- @tparam {table,...} msgs messages as for `produce`
-- @treturn {table,...} `{ partition =, offset =, id = }` for each message,
--   in order
-- @return or `nil, message`; a failure caused by one message ends in
--   `" (message I)"`
-- @raise as `produce`, the message prefixed with `"message I: "`

--- Reads messages of one partition in offset order.
-- @function log:read
-- @tparam string topic
-- @tparam integer partition
-- @tparam integer offset the first offset to read; below the log start,
--   reading starts at the log start
-- @tparam[opt=100] integer limit at most this many, 1 to 100000
-- @treturn {table,...} `{ topic =, partition =, offset =, id =, key =,
--   value =, timestamp =, headers = }` each (key nil when the message has
--   none); headers is an array of `{ name, value }` pairs in order that
--   also maps each name to its value (the last one when a name repeats)
-- @return or `nil, message` (unknown topic, no such partition)

--- The offsets of a partition.
-- @function log:offsets
-- @tparam string topic
-- @tparam integer partition
-- @treturn integer the log start: the first offset still stored
-- @treturn integer the next offset: the one the next message gets
-- @return or `nil, message`

--- Commits a consumer group's offset: the next one it will read.
-- @function log:commit
-- @tparam string group
-- @tparam string topic
-- @tparam integer partition
-- @tparam integer offset
-- @treturn boolean true
-- @return or `nil, message`

--- A consumer group's committed offset.
-- @function log:committed
-- @tparam string group
-- @tparam string topic
-- @tparam integer partition
-- @treturn integer the offset; `nil` alone when the group committed none
--   there
-- @return or `nil, message`

--- Applies retention (by age and size) now.
-- @function log:trim
-- @tparam[opt] string topic one topic; every topic when nil
-- @treturn integer the number of messages removed
-- @return or `nil, message`

return M
