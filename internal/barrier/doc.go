// Package barrier encrypts everything the server stores. It sits between
// the logical layer (engines, tokens, leases, mounts) and the physical
// storage.Backend, implements logical.Storage, and leaves nothing readable
// at rest: no value, no logical path, no token.
//
// # Life cycle
//
//	b, _ := barrier.New(barrier.Config{Backend: backend})
//	root, _ := barrier.GenerateKey(nil)  // the seal package protects it
//	_ = b.Initialize(ctx, root)          // writes the keyring; stays sealed
//	_ = b.Unseal(ctx, root)              // ErrInvalidKey if root is wrong
//	_ = b.Put(ctx, "logical/9f…/db", v)  // Get, List, Delete, Apply
//	b.Seal()                             // wipes the keys; ErrSealed from now on
//
// The barrier never stores the root key. It keeps it in memory while
// unsealed, to store the keyring again after Rotate.
//
// # Keys
//
// The keyring holds numbered key terms (1, 2, …), each a random 32-byte
// AES-256-GCM key with its install time, and a separate 32-byte path key
// that names entries and that rotation never changes (or every entry would
// have to move). It is stored at physical key "core/keyring", encrypted
// with AES-256-GCM under the root key. Rotate adds a term; new writes use
// it and older entries stay readable under their own term until they are
// next written (no full rewrite). ChangeRootKey re-encrypts the keyring
// under a new root key (rekey). Keys are wiped from memory on Seal; the
// types holding them redact themselves in fmt and slog.
//
// Nonces are random (12 bytes), so a term should encrypt well under 2^32
// values; KeyStatus reports the count since unseal to drive rotation.
//
// # Envelope
//
// Every stored envelope is
//
//	version (1 byte, = 1) | term (uint32, big endian) | nonce (12 bytes) | AES-GCM ciphertext and tag
//
// with additional data = version | term | context, where the context names
// the kind of envelope and its logical location: "d:"+path for a value,
// "l:"+folder for a child's name, "k:core/keyring" for the keyring (term 0,
// under the root key). An envelope copied to another key, a flipped bit, a
// changed term or nonce all fail to open with ErrCorrupt, never yielding
// wrong data.
//
// # Physical layout
//
//	core/keyring                                  the keyring (core/* otherwise belongs to the seal package)
//	e/<H("l:"+folder)>/<H("c:"+folder+child)>     one entry per child of a folder
//
// where H is base64url of the first 16 bytes of HMAC-SHA256(path key, ·),
// 22 characters (short keys keep the backend's B+tree shallow). An entry is
//
//	uvarint(len(name envelope)) | name envelope | value envelope
//
// The name envelope holds the child's name (a folder's with its trailing
// "/") sealed for its folder; the value envelope holds the value sealed for
// its path, and is absent from a folder's entry. A key a/b/c therefore has
// the entries ("", "a/"), ("a/", "b/") and ("a/b/", "c" + value). Get reads
// one entry and opens its value; List("a/") scans e/<H("l:a/")>/, opens
// only the names, checks each against its physical key, and sorts. (The
// name's additional data is its folder, not folder+name: the name is what
// is being decrypted. Checking the decrypted name's hash against the
// physical key binds it to its key instead.) Keeping name and value in one
// entry makes a write one physical put, and puts every entry of a folder
// (all versions of a KV v2 secret, say) next to each other in the backend's
// key order. The first layout kept them apart (d/ and l/); Unseal moves such
// entries into this one (migrate.go).
//
// What stays visible at rest: the number of entries, how many children each
// (unnamed) folder has, the size of each value, and each entry's key term.
//
// # Writes and folders
//
// Put writes the entry and any missing ancestor folders' entries in one
// atomic backend Apply; Apply does the same for a batch. Delete removes the
// entry, then removes the folder's entry from its parent if the folder is
// now empty, recursively upward, in one more Apply. A bounded in-memory set
// of folder entries known to exist (Config.DirCacheSize) spares a Put from
// rewriting them; ResetDirCache forgets it after the backend changed
// behind the barrier's back.
//
// Concurrency: writers hold a read lock on the folder tree while they
// apply; removing empty folders takes the write lock and checks again that
// they are empty, so a concurrent Put into a folder being removed either
// lands first (and the folder stays) or re-creates it. Reads do not take the tree lock.
// A separate read/write lock guards the keyring: every operation holds it
// for reading, Seal, Unseal, Rotate and ChangeRootKey for writing.
//
// # Paths
//
// A logical path is non-empty, does not start or end with "/" and has no
// empty segment ("a//b"); List takes "" or a folder ending in "/".
// Anything else is ErrInvalidPath.
package barrier
