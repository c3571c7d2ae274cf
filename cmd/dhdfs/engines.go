package main

// The metadata engines `dhdfs init --meta URL` can name; the embedded
// Badger engine comes with package cluster.
import _ "github.com/dhdfs/dhdfs/cluster/kv/etcdkv"
