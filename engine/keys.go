package engine

import (
	"hash/fnv"
	"strconv"
)

// idPattern is the charset of SKUs, locations, vendors, customers and key prefixes.
var idPattern = namePattern{max: 64}

// ValidID reports whether s can name a location, SKU, vendor, customer or region.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// IDPattern is what ValidID accepts, as a regular expression (for error messages).
func IDPattern() string { return idPattern.String() }

// namePattern matches ^[A-Za-z0-9._:-]{1,max}$. It is checked on every reserve, where a
// regular expression cost a tenth of the engine's own CPU.
type namePattern struct{ max int }

// MatchString reports whether s matches the pattern.
func (n namePattern) MatchString(s string) bool {
	if len(s) == 0 || len(s) > n.max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// String is the pattern as a regular expression (error messages name it).
func (n namePattern) String() string { return "^[A-Za-z0-9._:-]{1," + strconv.Itoa(n.max) + "}$" }

// Names of the eight keys of one partition, in the order every script receives them.
var partitionKeyNames = [...]string{"stock", "holds", "exp", "gc", "log", "meta", "cust", "xfer"}

// keyspace builds Redis key names. Every key of partition n carries the hash tag {pn},
// so one script can touch all of them on a single node or on a cluster.
type keyspace struct {
	prefix string
	parts  [][]string
	// calls[p] is what every FCALL on partition p sends after the function name: the number
	// of keys, the keys and p, boxed once (see Engine.fcall).
	calls [][]any
}

func newKeyspace(prefix string, partitions int) keyspace {
	ks := keyspace{prefix: prefix, parts: make([][]string, partitions), calls: make([][]any, partitions)}
	for p := range ks.parts {
		tag := prefix + ":{p" + strconv.Itoa(p) + "}:"
		keys := make([]string, len(partitionKeyNames))
		call := make([]any, 0, len(keys)+2)
		call = append(call, len(keys))
		for i, name := range partitionKeyNames {
			keys[i] = tag + name
			call = append(call, keys[i])
		}
		ks.parts[p], ks.calls[p] = keys, append(call, p)
	}
	return ks
}

// partition returns the keys of partition p in script order. The slice is shared: do not modify.
func (k keyspace) partition(p int) []string { return k.parts[p] }

func (k keyspace) stockKey(p int) string { return k.parts[p][0] }
func (k keyspace) holdsKey(p int) string { return k.parts[p][1] }
func (k keyspace) logKey(p int) string   { return k.parts[p][4] }
func (k keyspace) poolsKey() string      { return k.prefix + ":pools" }

// poolsVersionKey counts changes to the pools (see PoolsVersion).
func (k keyspace) poolsVersionKey() string { return k.prefix + ":pools:version" }
func (k keyspace) settingsKey() string     { return k.prefix + ":settings" }

// recordKey is the key record of token (see claim.lua), in partition p (keyPartition).
func (k keyspace) recordKey(p int, token string) string {
	return k.prefix + ":{p" + strconv.Itoa(p) + "}:k:" + token
}

// endKey is the end record of a hold of several parts (see hold_end.lua), beside its key
// record in partition p.
func (k keyspace) endKey(p int, hk holdKey) string {
	return k.prefix + ":{p" + strconv.Itoa(p) + "}:e:" + hk.String()
}

// txKey is the record of a vendor's transaction id (which change it names), in partition p.
func (k keyspace) txKey(p int, vendor, tx string) string {
	return k.prefix + ":{p" + strconv.Itoa(p) + "}:tx:" + vendor + ":" + tx
}

// waitKey is a short-lived key of partition p's node: writing it gives a connection a write
// whose replication offset covers every earlier write to that node (see WaitReplicated).
func (k keyspace) waitKey(p int) string { return k.prefix + ":{p" + strconv.Itoa(p) + "}:wait" }

// vendorKey is the set of pools ("loc|sku") of one vendor.
func (k keyspace) vendorKey(vendor string) string { return k.prefix + ":vendor:" + vendor }

// poolHash places a pool in the keyspace; its shard s lives in partition (poolHash + s) mod P,
// so the shards of a hot pool land on consecutive partitions (different slots in a cluster).
func poolHash(location, sku string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(location))
	h.Write([]byte{'|'})
	h.Write([]byte(sku))
	return h.Sum32()
}

// shardField is the stock-hash field of one shard's available count.
func shardField(location, sku string, shard int) string {
	return location + "|" + sku + "|" + strconv.Itoa(shard)
}
