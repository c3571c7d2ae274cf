package metrics_test

import (
	"testing"

	"github.com/dhdfs/dhdfs/cluster/metrics"
	"github.com/dhdfs/dhdfs/nodes"
	"github.com/dhdfs/dhdfs/nodes/storetest"
)

// The metrics wrapper keeps the contract of the store it wraps.
func TestMetricsStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) nodes.Store { return metrics.New().Store("d1", nodes.NewMemStore(1<<30)) })
}
