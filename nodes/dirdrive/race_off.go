//go:build !race

package dirdrive

// raceDetector is set in builds with the race detector (see gcRound).
const raceDetector = false
