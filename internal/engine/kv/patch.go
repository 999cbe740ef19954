package kv

// mergePatch applies patch to target as a JSON merge patch (RFC 7386): an
// object patch merges into an object target key by key, a null removes a
// key, and any other patch value replaces the target. target's maps are
// modified in place.
func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// subkeys returns the structure of m with every value that is not an
// object replaced by nil. Objects deeper than maxDepth (0: no limit)
// become nil too; level is the depth of m, starting at 1.
func subkeys(m map[string]any, maxDepth, level int) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		child, ok := v.(map[string]any)
		if !ok || (maxDepth > 0 && level >= maxDepth) {
			out[k] = nil
			continue
		}
		out[k] = subkeys(child, maxDepth, level+1)
	}
	return out
}
