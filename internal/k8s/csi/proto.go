package csi

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"
)

// The messages of the Secrets Store CSI Driver's provider API
// (sigs.k8s.io/secrets-store-csi-driver/provider/v1alpha1/service.proto),
// written by hand with the same field numbers and wire types so no
// generated code or new module is needed.

// VersionRequest is field 1 version.
type VersionRequest struct{ Version string }

// VersionResponse: 1 version, 2 runtime_name, 3 runtime_version.
type VersionResponse struct{ Version, RuntimeName, RuntimeVersion string }

// MountRequest: 1 attributes (JSON), 2 secrets (JSON), 3 target_path,
// 4 permission (JSON number), 5 repeated current_object_version.
type MountRequest struct {
	Attributes, Secrets, TargetPath, Permission string
	CurrentObjectVersion                        []ObjectVersion
}

// MountResponse: 1 repeated object_version, 2 error, 3 repeated files.
type MountResponse struct {
	ObjectVersion []ObjectVersion
	Error         *Error
	Files         []File
}

// ObjectVersion: 1 id, 2 version.
type ObjectVersion struct{ ID, Version string }

// Error: 1 code.
type Error struct{ Code string }

// File: 1 path, 2 mode (int32), 3 contents.
type File struct {
	Path     string
	Mode     int32
	Contents []byte
}

type message interface {
	marshal(b []byte) []byte
	unmarshal(b []byte) error
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, m message) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, m.marshal(nil))
}

var errMalformed = errors.New("csi: malformed protobuf message")

// fields calls f for every field of b; unknown fields are skipped, as
// proto3 requires.
func fields(b []byte, f func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error) error {
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		var (
			v []byte
			n uint64
		)
		switch typ {
		case protowire.BytesType:
			v, l = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			n, l = protowire.ConsumeVarint(b)
		default:
			l = protowire.ConsumeFieldValue(num, typ, b)
		}
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		if err := f(num, typ, v, n); err != nil {
			return err
		}
	}
	return nil
}

// str reads a string field, checking its wire type.
func str(typ protowire.Type, v []byte, dst *string) error {
	if typ != protowire.BytesType {
		return errMalformed
	}
	*dst = string(v)
	return nil
}

func (m *VersionRequest) marshal(b []byte) []byte { return appendString(b, 1, m.Version) }
func (m *VersionRequest) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == 1 {
			return str(typ, v, &m.Version)
		}
		return nil
	})
}

func (m *VersionResponse) marshal(b []byte) []byte {
	b = appendString(b, 1, m.Version)
	b = appendString(b, 2, m.RuntimeName)
	return appendString(b, 3, m.RuntimeVersion)
}
func (m *VersionResponse) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			return str(typ, v, &m.Version)
		case 2:
			return str(typ, v, &m.RuntimeName)
		case 3:
			return str(typ, v, &m.RuntimeVersion)
		}
		return nil
	})
}

func (m *ObjectVersion) marshal(b []byte) []byte {
	b = appendString(b, 1, m.ID)
	return appendString(b, 2, m.Version)
}
func (m *ObjectVersion) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			return str(typ, v, &m.ID)
		case 2:
			return str(typ, v, &m.Version)
		}
		return nil
	})
}

func (m *Error) marshal(b []byte) []byte { return appendString(b, 1, m.Code) }
func (m *Error) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if num == 1 {
			return str(typ, v, &m.Code)
		}
		return nil
	})
}

func (m *File) marshal(b []byte) []byte {
	b = appendString(b, 1, m.Path)
	if m.Mode != 0 {
		b = protowire.AppendTag(b, 2, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(int64(m.Mode)))
	}
	if len(m.Contents) > 0 {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Contents)
	}
	return b
}
func (m *File) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, n uint64) error {
		switch num {
		case 1:
			return str(typ, v, &m.Path)
		case 2:
			if typ != protowire.VarintType {
				return errMalformed
			}
			m.Mode = int32(n)
		case 3:
			if typ != protowire.BytesType {
				return errMalformed
			}
			m.Contents = append([]byte(nil), v...)
		}
		return nil
	})
}

func (m *MountRequest) marshal(b []byte) []byte {
	b = appendString(b, 1, m.Attributes)
	b = appendString(b, 2, m.Secrets)
	b = appendString(b, 3, m.TargetPath)
	b = appendString(b, 4, m.Permission)
	for i := range m.CurrentObjectVersion {
		b = appendMessage(b, 5, &m.CurrentObjectVersion[i])
	}
	return b
}
func (m *MountRequest) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		switch num {
		case 1:
			return str(typ, v, &m.Attributes)
		case 2:
			return str(typ, v, &m.Secrets)
		case 3:
			return str(typ, v, &m.TargetPath)
		case 4:
			return str(typ, v, &m.Permission)
		case 5:
			if typ != protowire.BytesType {
				return errMalformed
			}
			var ov ObjectVersion
			if err := ov.unmarshal(v); err != nil {
				return err
			}
			m.CurrentObjectVersion = append(m.CurrentObjectVersion, ov)
		}
		return nil
	})
}

func (m *MountResponse) marshal(b []byte) []byte {
	for i := range m.ObjectVersion {
		b = appendMessage(b, 1, &m.ObjectVersion[i])
	}
	if m.Error != nil {
		b = appendMessage(b, 2, m.Error)
	}
	for i := range m.Files {
		b = appendMessage(b, 3, &m.Files[i])
	}
	return b
}
func (m *MountResponse) unmarshal(b []byte) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte, _ uint64) error {
		if typ != protowire.BytesType && num >= 1 && num <= 3 {
			return errMalformed
		}
		switch num {
		case 1:
			var ov ObjectVersion
			if err := ov.unmarshal(v); err != nil {
				return err
			}
			m.ObjectVersion = append(m.ObjectVersion, ov)
		case 2:
			m.Error = &Error{}
			return m.Error.unmarshal(v)
		case 3:
			var f File
			if err := f.unmarshal(v); err != nil {
				return err
			}
			m.Files = append(m.Files, f)
		}
		return nil
	})
}

// codec is gRPC's "proto" codec for the hand-written messages above.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(message)
	if !ok {
		return nil, fmt.Errorf("csi: cannot marshal %T", v)
	}
	return m.marshal(nil), nil
}

func (codec) Unmarshal(b []byte, v any) error {
	m, ok := v.(message)
	if !ok {
		return fmt.Errorf("csi: cannot unmarshal into %T", v)
	}
	return m.unmarshal(b)
}
