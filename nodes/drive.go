package nodes

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Drive is a place that holds one drive of a pool: today a directory
// (a bare path or dir:///path), later a network service. It owns
// everything kept there — its identity, its chunk store, its journal, the
// metadata mirror's segments — and their destruction, so that no other
// package writes into it or knows its layout.
type Drive interface {
	// Location is how the pool names the drive: a path for a directory.
	Location() string
	// Identity returns the drive's identity, or an error wrapping
	// ErrNotDrive when it has none (a new or emptied drive).
	Identity() (Identity, error)
	// SetIdentity writes the identity durably, replacing any.
	SetIdentity(id Identity) error
	// OpenStore opens (creating if needed) the drive's chunk store.
	OpenStore(o Options) (Store, error)
	// OpenJournal opens the drive's journal (journal.go).
	OpenJournal() (*Journal, error)
	// Space reports the free and total bytes where the drive keeps data.
	Space() (free, total int64, err error)
	// FailureDomain names what fails together with the drive: copies on
	// drives of one domain are lost together. A directory's is its
	// filesystem's device ("8:16"); a network drive would name its host.
	FailureDomain() (string, error)
	// Mirror is the drive's area for the metadata mirror's files.
	Mirror() FileArea
	// Destroy deletes the chunk store and the identity: the drive was
	// emptied and leaves the pool, and may be added again.
	Destroy() error
	// Retire keeps the chunk store but renames the identity aside, so the
	// drive is no longer taken for a drive of the pool (forced removal).
	Retire() error
}

// FileArea keeps named files, each written whole and durably.
type FileArea interface {
	// List returns the names in the area, sorted; none when it is absent.
	List() ([]string, error)
	// Read returns a file's content (an error wrapping os.ErrNotExist when
	// absent).
	Read(name string) ([]byte, error)
	// Write replaces a file atomically and durably.
	Write(name string, data []byte) error
	// Remove deletes a file; a missing one is not an error.
	Remove(name string) error
	// ModTime says when a file was last written.
	ModTime(name string) (time.Time, error)
}

// DriveOpener opens a drive from a location of its scheme.
type DriveOpener func(u *url.URL) (Drive, error)

var (
	driveSchemesMu sync.Mutex
	driveSchemes   = map[string]DriveOpener{}
)

// RegisterDrive makes a kind of drive available under a URL scheme.
func RegisterDrive(scheme string, open DriveOpener) {
	driveSchemesMu.Lock()
	defer driveSchemesMu.Unlock()
	if _, ok := driveSchemes[scheme]; ok {
		panic("nodes: drive scheme " + scheme + " registered twice")
	}
	driveSchemes[scheme] = open
}

// OpenDrive returns the drive at location: a URL of a registered scheme,
// or a path (a directory drive, as dir:///path is).
func OpenDrive(location string) (Drive, error) {
	u := &url.URL{Scheme: "dir", Path: location}
	if strings.Contains(location, "://") {
		var err error
		if u, err = url.Parse(location); err != nil {
			return nil, fmt.Errorf("drive %q: %w", location, err)
		}
	}
	driveSchemesMu.Lock()
	open := driveSchemes[u.Scheme]
	driveSchemesMu.Unlock()
	if open == nil {
		return nil, fmt.Errorf("drive %q: no kind of drive has the scheme %q", location, u.Scheme)
	}
	return open(u)
}

// UnusableDrive is a drive at location that could not be opened: every
// call fails with err. It lets a pool keep a drive it cannot reach, failed.
func UnusableDrive(location string, err error) Drive { return unusable{location, err} }

type unusable struct {
	loc string
	err error
}

func (u unusable) Location() string                 { return u.loc }
func (u unusable) Identity() (Identity, error)      { return Identity{}, u.err }
func (u unusable) SetIdentity(Identity) error       { return u.err }
func (u unusable) OpenStore(Options) (Store, error) { return nil, u.err }
func (u unusable) OpenJournal() (*Journal, error)   { return nil, u.err }
func (u unusable) Space() (int64, int64, error)     { return 0, 0, u.err }
func (u unusable) FailureDomain() (string, error)   { return "", u.err }
func (u unusable) Mirror() FileArea                 { return unusableArea{u.err} }
func (u unusable) Destroy() error                   { return u.err }
func (u unusable) Retire() error                    { return u.err }

type unusableArea struct{ err error }

func (a unusableArea) List() ([]string, error)           { return nil, a.err }
func (a unusableArea) Read(string) ([]byte, error)       { return nil, a.err }
func (a unusableArea) Write(string, []byte) error        { return a.err }
func (a unusableArea) Remove(string) error               { return a.err }
func (a unusableArea) ModTime(string) (time.Time, error) { return time.Time{}, a.err }
