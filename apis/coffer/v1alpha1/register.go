package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of these types.
var GroupVersion = schema.GroupVersion{Group: "coffer.dev", Version: "v1alpha1"}

// AddToScheme registers the types of this package with a scheme. It
// always returns nil; the error result fits runtime.SchemeBuilder.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&CofferStore{}, &CofferStoreList{},
		&ClusterCofferStore{}, &ClusterCofferStoreList{},
		&CofferSecret{}, &CofferSecretList{},
		&ClusterCofferSecret{}, &ClusterCofferSecretList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
