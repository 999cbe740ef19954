package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Kinds of store a CofferSecret can reference in secretStoreRef.kind.
const (
	KindStore        = "CofferStore"
	KindClusterStore = "ClusterCofferStore"
)

// StoreSpec says where a Coffer (or Vault-API) server is and how to log in.
// ESO's SecretStore puts these fields under spec.provider.vault; Coffer has
// one provider, so they sit directly under spec.
type StoreSpec struct {
	// Server is the server's base URL, e.g. "https://coffer.coffer:8200".
	// +kubebuilder:validation:Pattern=`^https?://`
	Server string `json:"server"`

	// CABundle is PEM CA certificates that sign the server's certificate.
	// Empty: the system pool.
	// +optional
	CABundle []byte `json:"caBundle,omitempty"`

	// Path is the KV mount the remote keys are relative to, e.g. "secret".
	// The KV version (1 or 2) is detected from the server. Empty: keys are
	// full logical paths ("secret/app").
	// +optional
	Path string `json:"path,omitempty"`

	// Auth says how the operator logs in. Exactly one method is set.
	Auth StoreAuth `json:"auth"`
}

// StoreAuth holds exactly one login method.
// +kubebuilder:validation:MinProperties=1
// +kubebuilder:validation:MaxProperties=1
type StoreAuth struct {
	// Kubernetes logs in with a service account token that the operator
	// requests through TokenRequest: no static token is stored.
	// +optional
	Kubernetes *KubernetesAuth `json:"kubernetes,omitempty"`

	// TokenSecretRef names a Secret key that holds a token.
	// +optional
	TokenSecretRef *SecretKeySelector `json:"tokenSecretRef,omitempty"`
}

// KubernetesAuth is the server's Kubernetes auth method.
type KubernetesAuth struct {
	// MountPath is where the method is mounted. Empty: "kubernetes".
	// +kubebuilder:default=kubernetes
	// +optional
	MountPath string `json:"mountPath,omitempty"`

	// Role is the role to log in with.
	// +kubebuilder:validation:MinLength=1
	Role string `json:"role"`

	// ServiceAccountRef is the service account whose token is requested.
	ServiceAccountRef ServiceAccountSelector `json:"serviceAccountRef"`
}

// ServiceAccountSelector names a service account.
type ServiceAccountSelector struct {
	// Name of the service account.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Namespace of the service account; only a ClusterCofferStore may set
	// it. Empty: the store's namespace, or for a ClusterCofferStore the
	// namespace of the CofferSecret being synced.
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Audiences of the requested token. Empty: the API server's default.
	// +optional
	Audiences []string `json:"audiences,omitempty"`
}

// SecretKeySelector names one key of a Secret.
type SecretKeySelector struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`

	// Key in the Secret's data. Empty: "token".
	// +optional
	Key string `json:"key,omitempty"`

	// Namespace of the Secret; only a ClusterCofferStore may set it. Empty:
	// the store's namespace, or for a ClusterCofferStore the namespace of
	// the CofferSecret being synced.
	// +optional
	Namespace string `json:"namespace,omitempty"`
}

// StoreStatus is what the operator last saw of the store.
type StoreStatus struct {
	// Conditions holds the Ready condition. Its reason is one of Valid,
	// InvalidConfig, Unreachable, Sealed, LoginRefused.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=coffer,shortName=cs
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.spec.server`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// CofferStore is a namespaced connection to a server; CofferSecrets in the
// same namespace reference it. ESO: SecretStore with provider.vault.
type CofferStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   StoreSpec   `json:"spec"`
	Status StoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// CofferStoreList is a list of CofferStores.
type CofferStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []CofferStore `json:"items"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=coffer,shortName=ccs
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.spec.server`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// ClusterCofferStore is a cluster-wide connection to a server that
// CofferSecrets in any namespace may reference. ESO: ClusterSecretStore.
type ClusterCofferStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   StoreSpec   `json:"spec"`
	Status StoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// ClusterCofferStoreList is a list of ClusterCofferStores.
type ClusterCofferStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterCofferStore `json:"items"`
}
