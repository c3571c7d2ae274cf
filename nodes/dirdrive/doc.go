// Package dirdrive is the drive that is a directory of a local
// filesystem: dir:///path locations and bare paths (nodes.OpenDrive). It
// keeps chunks in a Badger index over pack files (BadgerStore, pack.go),
// its identity and journal in files beside them, and the metadata
// mirror's segments in a subdirectory. Import it for its registration.
package dirdrive
