//go:build race

package nodes

// raceDetector is set in builds with the race detector (see gcRound).
const raceDetector = true
