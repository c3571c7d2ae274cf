package cluster

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// BuildVersion describes this build: the module version (a tag for go
// install …@vX, a pseudo-version naming the commit, or "(devel)") and,
// when the build stamped a commit the version does not name, that commit.
func BuildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := info.Main.Version
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+changes"
			}
		}
	}
	if rev != "" && !strings.Contains(v, rev[:min(12, len(rev))]) {
		v += fmt.Sprintf(" (commit %.12s%s)", rev, modified)
	}
	return v
}
