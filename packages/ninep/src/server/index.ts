// Public face of @clustermatic/ninep/server: the 9P server framework.
export type * from "./backend.js";
