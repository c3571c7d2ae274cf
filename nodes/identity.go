package nodes

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// IdentityFile is the name of the file, at the top of a drive directory,
// that says which pool and drive the directory belongs to. It lets dhdfs
// notice a wrong, swapped or foreign path before touching its chunks.
const IdentityFile = "dhdfs-drive.json"

// Identity is the content of IdentityFile.
type Identity struct {
	Format  int       `json:"format"`
	PoolID  string    `json:"pool_id"`
	DriveID string    `json:"drive_id"`
	Created time.Time `json:"created"`
	// HomeID names the home that uses the drive (PoolConfig.HomeID): a
	// home rebuilt by recover takes its drives over, and the old one, if it
	// still exists, finds them taken and leaves them alone.
	HomeID string `json:"home_id,omitempty"`
}

// IdentityFormat is the format WriteIdentity writes: 2 since drives may
// hold pack files (see upgradeIdentity); 1, drives written before, is
// still read.
const IdentityFormat = 2

// NewID returns a random 128-bit identifier in hex.
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the kernel's RNG never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// ReadIdentity reads the identity file of the drive directory dir. It
// returns an error wrapping ErrNotDrive when there is none.
func ReadIdentity(dir string) (Identity, error) {
	var id Identity
	err := ReadJSONFile(filepath.Join(dir, IdentityFile), &id)
	if errors.Is(err, os.ErrNotExist) {
		return id, fmt.Errorf("%s: %w", dir, ErrNotDrive)
	}
	if err != nil {
		return id, fmt.Errorf("read drive identity: %w", err)
	}
	if id.Format < 1 || id.Format > IdentityFormat || id.PoolID == "" || id.DriveID == "" {
		return id, fmt.Errorf("read drive identity %s: unsupported format %d or empty ids", filepath.Join(dir, IdentityFile), id.Format)
	}
	return id, nil
}

// WriteIdentity atomically writes the identity file into dir and syncs it.
func WriteIdentity(dir string, id Identity) error {
	id.Format = IdentityFormat
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return fmt.Errorf("encode drive identity: %w", err)
	}
	return WriteFileAtomic(filepath.Join(dir, IdentityFile), append(b, '\n'), 0o644)
}

// ReadJSONFile decodes the JSON file at path into v. A missing file gives
// an error wrapping os.ErrNotExist.
func ReadJSONFile(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// WriteFileAtomic writes data to a temporary file beside path, syncs it,
// renames it over path and syncs the directory, so a crash leaves either
// the old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory so that a rename or create inside it is durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
