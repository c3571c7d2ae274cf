package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/cluster"
	"github.com/dhdfs/dhdfs/nodes"
)

// parseFaults reads the hidden --debug-faults flag: drives and the faults
// to inject into them, for trying how a pool copes with bad disks, e.g.
//
//	d1:latency=200ms,capacity=64MiB;d2:flap=2s;d3:hang;d4:corrupt,read-error
func parseFaults(spec string) (map[string]nodes.Faults, error) {
	out := map[string]nodes.Faults{}
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, list, ok := strings.Cut(part, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("--debug-faults: %q: want DRIVE:FAULT[,FAULT...]", part)
		}
		var f nodes.Faults
		for _, item := range strings.Split(list, ",") {
			key, val, _ := strings.Cut(strings.TrimSpace(item), "=")
			var err error
			switch key {
			case "latency":
				f.Latency, err = time.ParseDuration(val)
			case "flap":
				f.Flap, err = time.ParseDuration(val)
			case "capacity":
				f.Capacity, err = parseSize(val)
			case "hang":
				f.Hang = true
			case "corrupt":
				f.Corrupt = true
			case "read-error":
				f.ReadErr = fmt.Errorf("injected read error: %w", syscall.EIO)
			case "write-error":
				f.WriteErr = fmt.Errorf("injected write error: %w", syscall.EIO)
			case "enospc":
				f.WriteErr = fmt.Errorf("injected: %w", syscall.ENOSPC)
			default:
				err = errors.New("unknown fault (latency=D, flap=D, capacity=SIZE, hang, corrupt, read-error, write-error, enospc)")
			}
			if err != nil {
				return nil, fmt.Errorf("--debug-faults: %s: %q: %w", name, item, err)
			}
		}
		out[name] = f
	}
	return out, nil
}

// injectFaults wraps the named drives' stores in nodes.Faulty, beneath
// any wrapper already set, so that metrics see the injected faults.
func injectFaults(opts *cluster.Options, faults map[string]nodes.Faults) {
	outer := opts.WrapStore
	opts.WrapStore = func(rec cluster.DriveRecord, s nodes.Store) nodes.Store {
		if f, ok := faults[rec.Name]; ok {
			fs := nodes.NewFaulty(s)
			fs.Set(f)
			s = fs
		}
		if outer != nil {
			s = outer(rec, s)
		}
		return s
	}
}
