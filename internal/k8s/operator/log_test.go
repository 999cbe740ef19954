package operator

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// staticToken is a fake client.Reader (named so) that serves one token
// Secret, for tests of the hub that need no API server.
type staticToken struct{ client.Reader }

func (staticToken) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	obj.(*corev1.Secret).Data = map[string][]byte{"token": []byte("tok")}
	return nil
}
