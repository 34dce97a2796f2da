import { createContext } from 'preact';
import { useContext } from 'preact/hooks';
import { isAbort } from './api.js';

/** Shows an error in the page's alert region (an API error shows the server's message). */
export type ReportError = (error: unknown) => void;

export const ErrorContext = createContext<ReportError>(() => undefined);

/** The page's error reporter; aborted requests (a view left early) are not errors. */
export function useReportError(): ReportError {
  const report = useContext(ErrorContext);
  return (error) => {
    if (!isAbort(error)) report(error);
  };
}
