package dirdrive

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/dhdfs/dhdfs/nodes"
)

func init() {
	nodes.RegisterDrive("dir", func(u *url.URL) (nodes.Drive, error) { return dirDriveAt(u.Path) })
}

// dirDrive is a drive in a directory of a local filesystem.
type dirDrive struct{ dir string }

func dirDriveAt(dir string) (nodes.Drive, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("drive directory %q: not an absolute path", dir)
	}
	return dirDrive{dir: filepath.Clean(dir)}, nil
}

// mirrorDir holds the metadata mirror's segments inside a drive directory.
const mirrorDir = "meta-mirror"

func (d dirDrive) Location() string                               { return d.dir }
func (d dirDrive) Identity() (nodes.Identity, error)              { return nodes.ReadIdentity(d.dir) }
func (d dirDrive) SetIdentity(id nodes.Identity) error            { return nodes.WriteIdentity(d.dir, id) }
func (d dirDrive) OpenStore(o nodes.Options) (nodes.Store, error) { return OpenBadger(d.dir, o) }
func (d dirDrive) OpenJournal() (*nodes.Journal, error)           { return nodes.OpenJournal(d.dir) }
func (d dirDrive) Space() (int64, int64, error)                   { return nodes.FilesystemSpace(d.dir) }
func (d dirDrive) Mirror() nodes.FileArea                         { return dirArea(filepath.Join(d.dir, mirrorDir)) }

func (d dirDrive) FailureDomain() (string, error) {
	dev, err := nodes.DeviceOf(d.dir)
	if err != nil {
		return "", err
	}
	return nodes.DeviceDomain(dev), nil
}

func (d dirDrive) Destroy() error {
	var errs []error
	for _, dir := range StoreDirs(d.dir) {
		errs = append(errs, os.RemoveAll(dir))
	}
	if err := os.Remove(filepath.Join(d.dir, nodes.IdentityFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d dirDrive) Retire() error {
	return os.Rename(filepath.Join(d.dir, nodes.IdentityFile), filepath.Join(d.dir, nodes.IdentityFile+".removed"))
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
	return nodes.WriteFileAtomic(filepath.Join(string(a), name), data, 0o600)
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
