// Package docs holds meshca's user documentation as Markdown files, and tests
// that fail when the documentation drifts from the code: every `meshca serve`
// flag, registered metric, meshca.io annotation, Event reason, renewal reason
// and policy rule must be documented, and every relative link must resolve.
//
// It must not hold code that the meshca binary or other packages use.
package docs
