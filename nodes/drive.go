package nodes

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
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
	driveSchemes   = map[string]DriveOpener{"dir": func(u *url.URL) (Drive, error) { return dirDriveAt(u.Path) }}
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
	if !strings.Contains(location, "://") {
		return dirDriveAt(location)
	}
	u, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("drive %q: %w", location, err)
	}
	driveSchemesMu.Lock()
	open := driveSchemes[u.Scheme]
	driveSchemesMu.Unlock()
	if open == nil {
		return nil, fmt.Errorf("drive %q: no kind of drive has the scheme %q", location, u.Scheme)
	}
	return open(u)
}

// dirDrive is a drive in a directory of a local filesystem.
type dirDrive struct{ dir string }

func dirDriveAt(dir string) (Drive, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("drive directory %q: not an absolute path", dir)
	}
	return dirDrive{dir: filepath.Clean(dir)}, nil
}

// mirrorDir holds the metadata mirror's segments inside a drive directory.
const mirrorDir = "meta-mirror"

func (d dirDrive) Location() string                   { return d.dir }
func (d dirDrive) Identity() (Identity, error)        { return ReadIdentity(d.dir) }
func (d dirDrive) SetIdentity(id Identity) error      { return WriteIdentity(d.dir, id) }
func (d dirDrive) OpenStore(o Options) (Store, error) { return OpenBadger(d.dir, o) }
func (d dirDrive) OpenJournal() (*Journal, error)     { return OpenJournal(d.dir) }
func (d dirDrive) Space() (int64, int64, error)       { return FilesystemSpace(d.dir) }
func (d dirDrive) Mirror() FileArea                   { return dirArea(filepath.Join(d.dir, mirrorDir)) }

func (d dirDrive) FailureDomain() (string, error) {
	dev, err := DeviceOf(d.dir)
	if err != nil {
		return "", err
	}
	return DeviceDomain(dev), nil
}

// DeviceDomain names the failure domain of a filesystem device.
func DeviceDomain(dev uint64) string {
	// Linux's encoding of major and minor numbers in st_dev.
	major := (dev >> 8 & 0xfff) | (dev >> 32 & ^uint64(0xfff))
	minor := (dev & 0xff) | (dev >> 12 & ^uint64(0xff))
	return fmt.Sprintf("%d:%d", major, minor)
}

func (d dirDrive) Destroy() error {
	var errs []error
	for _, dir := range StoreDirs(d.dir) {
		errs = append(errs, os.RemoveAll(dir))
	}
	if err := os.Remove(filepath.Join(d.dir, IdentityFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d dirDrive) Retire() error {
	return os.Rename(filepath.Join(d.dir, IdentityFile), filepath.Join(d.dir, IdentityFile+".removed"))
}

// dirArea is a FileArea in a directory, created on the first write.
type dirArea string

func (a dirArea) List() ([]string, error) {
	entries, err := os.ReadDir(string(a))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func (a dirArea) Read(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(a), name))
}

func (a dirArea) Write(name string, data []byte) error {
	if err := os.MkdirAll(string(a), 0o700); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(string(a), name), data, 0o600)
}

func (a dirArea) ModTime(name string) (time.Time, error) {
	st, err := os.Stat(filepath.Join(string(a), name))
	if err != nil {
		return time.Time{}, err
	}
	return st.ModTime(), nil
}

func (a dirArea) Remove(name string) error {
	if err := os.Remove(filepath.Join(string(a), name)); err != nil && !errors.Is(err, syscall.ENOENT) {
		return err
	}
	return nil
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
