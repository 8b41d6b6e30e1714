// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3 for
// the real-control-plane test tier (see docs/testing-kube.md). etcd's own
// main package lives in a module that is not meant to be depended on, so
// this calls the same entry point it does.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
