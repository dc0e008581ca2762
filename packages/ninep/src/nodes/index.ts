export {
  compressNodeList,
  expandNodeList,
  NodeListError,
  type NodeListOptions,
  type NodeSpec,
  parseNodeList,
  splitNodeName,
} from "./nodeset.js";
