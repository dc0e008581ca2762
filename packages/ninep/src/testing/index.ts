// Public face of @clustermatic/ninep/testing: a 9P conformance suite any server can run, and the
// raw frame-level client it is built on.
export {
  type Check,
  type CheckResult,
  type ConformanceTarget,
  conformanceChecks,
  runConformance,
} from "./conformance.js";
export { errorOf, RawClient, RawTimeoutError, type Request } from "./raw.js";
